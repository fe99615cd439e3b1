"""Prompt log-probabilities (echo in the OpenAI API) come from the prefill's own logits and
equal transformers' log_softmax, with chunked prefill, a prefix-cache hit and n > 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.factories import make_engine, random_prompts
from workers.protocol import GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams


def hf_prompt_logprobs(llama_hf, prompt: list[int]) -> torch.Tensor:
    """[len(prompt) - 1]: log p(prompt[t] | prompt[:t]) for t >= 1, and the full rows."""
    with torch.no_grad():
        logits = llama_hf(torch.tensor([prompt])).logits[0].float()
    return torch.log_softmax(logits, -1)[:-1]


def run(engine, specs: list[GenerateRequest]) -> dict[str, list[TokenDelta]]:
    for spec in specs:
        engine.add_request(spec)
    out: dict[str, list[TokenDelta]] = {s.request_id: [] for s in specs}
    while engine.has_unfinished():
        for delta in engine.step():
            out[delta.request_id].append(delta)
    return out


def assert_equal_to_transformers(delta: TokenDelta, prompt: list[int], llama_hf, top: int):
    rows = hf_prompt_logprobs(llama_hf, prompt)
    entries = delta.prompt_logprobs
    assert entries is not None and len(entries) == len(prompt) - 1
    for t, entry in enumerate(entries, start=1):
        assert entry.token_id == prompt[t] and entry.logprob is not None
        assert abs(entry.logprob - float(rows[t - 1, prompt[t]])) < 1e-4
        values, ids = torch.topk(rows[t - 1], top)
        assert [i for i, _ in entry.top] == ids.tolist()
        assert all(abs(a - float(b)) < 1e-4 for (_, a), b in zip(entry.top, values, strict=True))


@pytest.mark.parametrize("max_batched", [512, 7])  # whole, and chunked prefill
def test_prompt_logprobs_equal_transformers(llama_dir: Path, llama_hf, max_batched: int) -> None:
    engine = make_engine(llama_dir, max_num_batched_tokens=max_batched)
    prompts = random_prompts([23, 9, 2], seed=3)
    params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=3)
    specs = [GenerateRequest(f"p{i}", tuple(p), params) for i, p in enumerate(prompts)]
    out = run(engine, specs)
    for spec, prompt in zip(specs, prompts, strict=True):
        assert_equal_to_transformers(out[spec.request_id][0], prompt, llama_hf, 3)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_prompt_logprobs_are_exact_after_a_prefix_cache_hit(llama_dir: Path, llama_hf) -> None:
    engine = make_engine(llama_dir)
    prompt = random_prompts([26], seed=4)[0]
    warm = GenerateRequest("warm", tuple(prompt[:20]), SamplingParams(max_tokens=2))
    run(engine, [warm])  # its full blocks are now in the prefix cache
    params = SamplingParams(max_tokens=3, temperature=0, prompt_logprobs=0, n=2, seed=1)
    out = run(engine, [GenerateRequest("echo", tuple(prompt), params)])
    firsts = [d for d in out["echo"] if d.prompt_logprobs is not None]
    assert len(firsts) == 2  # one per sample
    for delta in firsts:
        assert_equal_to_transformers(delta, prompt, llama_hf, 0)
    later = [d for d in out["echo"] if d not in firsts]
    assert all(d.prompt_logprobs is None for d in later)
