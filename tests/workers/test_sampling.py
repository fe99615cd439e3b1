"""Sampling: seeds reproduce, filters never emit excluded tokens, penalties as defined,
n samples share the prompt's blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.factories import make_engine, random_prompts
from workers.protocol import GenerateRequest, TokenLogprob
from workers.sampler import apply_penalties, draw, filter_logits, sampling_probs
from workers.sampling_params import SamplingParams


def run(engine, prompt: list[int], params: SamplingParams, rid: str = "s") -> list[list[int]]:
    return engine.generate([GenerateRequest(rid, tuple(prompt), params)])[rid]


def test_seed_reproduces_whatever_the_batch(llama_dir: Path) -> None:
    prompt = random_prompts([8])[0]
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=42)
    alone = run(make_engine(llama_dir), prompt, params)
    engine = make_engine(llama_dir)
    others = [
        GenerateRequest(f"o{i}", tuple(p), SamplingParams(max_tokens=12))
        for i, p in enumerate(random_prompts([5, 11, 3], seed=9))
    ]
    batched = engine.generate([*others, GenerateRequest("s", tuple(prompt), params)])["s"]
    assert alone == batched
    different = run(make_engine(llama_dir), prompt, SamplingParams(max_tokens=12, seed=43))
    assert different != alone


def test_sampling_varies_without_seed(llama_dir: Path) -> None:
    prompt = random_prompts([8])[0]
    engine = make_engine(llama_dir)
    outs = {
        tuple(run(engine, prompt, SamplingParams(max_tokens=8), rid=f"x{i}")[0]) for i in range(4)
    }
    assert len(outs) > 1


def test_top_k_top_p_min_p_never_emit_excluded_tokens() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, generator=g) * 3
    probs = logits.softmax(-1)
    order = torch.argsort(probs, descending=True)
    top_k_allowed = set(order[:5].tolist())
    cum = probs[order].cumsum(0)
    top_p_allowed = set(order[: int((cum < 0.6).sum()) + 1].tolist())
    min_p_allowed = set(torch.nonzero(probs >= 0.2 * probs.max()).flatten().tolist())
    cases = [
        (SamplingParams(top_k=5), top_k_allowed),
        (SamplingParams(top_p=0.6), top_p_allowed),
        (SamplingParams(min_p=0.2), min_p_allowed),
    ]
    for params, allowed in cases:
        probs = sampling_probs(logits, params)
        drawn = {draw(probs, params, g) for _ in range(2000)}
        assert drawn <= allowed, params
        assert len(drawn) > 1 or len(allowed) == 1


def test_filters_keep_the_best_token() -> None:
    logits = torch.tensor([5.0, 1.0, 0.5, -2.0])
    assert torch.isfinite(filter_logits(logits, 1, 0.01, 0.99)).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_penalties_change_logits_as_defined() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -0.5])
    params = SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    out = apply_penalties(logits, params, prompt_ids=[0], output_ids=[1, 1, 3])
    expected = torch.tensor(
        [
            2.0 / 2,  # in the prompt: repetition only
            -1.0 * 2 - 0.5 * 2 - 0.25,  # output twice: repetition, frequency x2, presence
            0.5,  # unseen
            3.0 / 2 - 0.5 - 0.25,  # output once
            -0.5,  # unseen
        ]
    )
    torch.testing.assert_close(out, expected)


def test_repetition_penalty_changes_generation(llama_dir: Path) -> None:
    prompt = random_prompts([6])[0]
    engine = make_engine(llama_dir)
    plain = run(engine, prompt, SamplingParams(max_tokens=16, temperature=0), "a")[0]
    penalized = run(
        engine, prompt, SamplingParams(max_tokens=16, temperature=0, repetition_penalty=5.0), "b"
    )[0]
    assert len(set(penalized)) > len(set(plain))


def test_min_tokens_holds_back_eos_and_stop_tokens_stop(llama_dir: Path) -> None:
    prompt = random_prompts([6])[0]
    engine = make_engine(llama_dir)
    free = run(engine, prompt, SamplingParams(max_tokens=30, temperature=0), "f")[0]
    stop_at = free[3]
    stopped = run(
        engine, prompt, SamplingParams(max_tokens=30, temperature=0, stop_token_ids=(stop_at,)), "s"
    )[0]
    assert stopped == free[: free.index(stop_at) + 1]
    held = run(
        engine,
        prompt,
        SamplingParams(max_tokens=30, temperature=0, min_tokens=8, stop_token_ids=(stop_at,)),
        "m",
    )[0]
    assert stop_at not in held[:8]
    assert len(held) >= 8


def test_ignore_eos_runs_to_max_tokens(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    out = run(
        engine,
        [3, 4],
        SamplingParams(max_tokens=40, ignore_eos=True, seed=1, stop_token_ids=()),
        "i",
    )[0]
    assert len(out) == 40


def test_logprobs_are_returned_and_consistent(llama_dir: Path) -> None:
    prompt = random_prompts([6])[0]
    engine = make_engine(llama_dir)
    engine.add_request(
        GenerateRequest("l", tuple(prompt), SamplingParams(max_tokens=4, temperature=0, logprobs=3))
    )
    deltas = []
    while engine.has_unfinished():
        deltas += engine.step()
    entries: list[TokenLogprob] = []
    for d in deltas:
        assert d.logprobs is not None  # asked for
        entries += d.logprobs
    assert len(entries) == 4
    for entry in entries:
        assert entry.logprob is not None and len(entry.top) == 3
        assert entry.top[0][0] == entry.token_id  # greedy picks the most likely
        assert entry.logprob == pytest.approx(entry.top[0][1])
        assert entry.logprob <= 0


def test_n_samples_share_prompt_blocks(llama_dir: Path) -> None:
    prompt = random_prompts([33])[0]  # 32 tokens = 8 full blocks are shared, the last is not
    engine = make_engine(llama_dir, block_size=4)
    params = SamplingParams(max_tokens=3, n=4, seed=7)
    engine.add_request(GenerateRequest("n", tuple(prompt), params))
    engine.step()  # the prompt but its last token, once
    engine.step()  # each sample computes the last token and samples
    used = engine.stats().num_total_blocks - engine.stats().num_free_blocks
    assert used == 8 + 4  # not 4 * 9
    while engine.has_unfinished():
        engine.step()
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_n_samples_are_distinct_and_reproducible(llama_dir: Path) -> None:
    prompt = random_prompts([10])[0]
    params = SamplingParams(max_tokens=8, n=4, seed=11)
    first = run(make_engine(llama_dir), prompt, params)
    second = run(make_engine(llama_dir), prompt, params)
    assert first == second
    assert len({tuple(s) for s in first}) == 4
