"""Rejection sampling keeps the target's distribution exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.factories import load_hf, make_engine, make_tiny_model, speculator_of
from workers.batch_sampler import draw_rows
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampler import sampling_probs
from workers.sampling_batch import row_draws
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.verify import SampledDrafts, verify_drafts, verify_sampled


def total_variation(counts: Counter, probs: dict, n: int) -> float:
    keys = set(counts) | set(probs)
    return 0.5 * sum(abs(counts.get(k, 0) / n - probs.get(k, 0.0)) for k in keys)


@pytest.mark.parametrize("deterministic_draft", [False, True])
def test_verify_keeps_the_target_distribution(deterministic_draft: bool) -> None:
    g = torch.Generator().manual_seed(0)
    vocab, n = 6, 40000
    params = SamplingParams(temperature=1.0)
    p = torch.softmax(torch.randn(2, vocab, generator=g) * 1.5, -1)  # target, positions 0-1
    q = torch.softmax(torch.randn(vocab, generator=g) * 1.5, -1)  # draft, position 0
    first: Counter = Counter()
    second_after_accept: Counter = Counter()
    for _ in range(n):
        if deterministic_draft:
            draft, draft_probs = int(p[0].argmax()), None
        else:
            draft = int(torch.multinomial(q, 1, generator=g))
            draft_probs = q[None, :]
        out = verify_drafts(p, [draft], draft_probs, params, g)
        first[out[0]] += 1
        if len(out) == 2:
            second_after_accept[out[1]] += 1
    assert total_variation(first, dict(enumerate(p[0].tolist())), n) < 0.01
    accepted = sum(second_after_accept.values())
    assert total_variation(second_after_accept, dict(enumerate(p[1].tolist())), accepted) < 0.02


@pytest.mark.parametrize("deterministic_draft", [False, True])
def test_batched_verification_keeps_the_target_distribution(deterministic_draft: bool) -> None:
    """verify_sampled over a batch of sequences sharing one generator (their acceptance
    tests first, then every last token's draw in one call) keeps the target's law too."""
    g = torch.Generator().manual_seed(1)
    vocab, n = 6, 40000
    p = torch.softmax(torch.randn(2, vocab, generator=g) * 1.5, -1)
    q = torch.softmax(torch.randn(vocab, generator=g) * 1.5, -1)
    if deterministic_draft:
        drafts, draft_probs = [int(p[0].argmax())] * n, None
    else:
        drafts, draft_probs = torch.multinomial(q, n, True, generator=g).tolist(), q[None, :]
    spans = [SampledDrafts(2 * i, (d,), draft_probs, g) for i, d in enumerate(drafts)]
    verified = verify_sampled(p.repeat(n, 1), spans)
    last = draw_rows(verified.final, row_draws([None] * n, g, torch.device("cpu"))).tolist()
    first: Counter = Counter()
    second_after_accept: Counter = Counter()
    for accepted, token in zip(verified.accepted, last, strict=True):
        first[accepted[0] if accepted else token] += 1
        if accepted:
            second_after_accept[token] += 1
    assert total_variation(first, dict(enumerate(p[0].tolist())), n) < 0.01
    accepted_n = sum(second_after_accept.values())
    assert total_variation(second_after_accept, dict(enumerate(p[1].tolist())), accepted_n) < 0.02


@pytest.mark.slow
def test_engine_sampling_with_speculation_matches_target(tmp_path: Path) -> None:
    """The first two sampled tokens (the second goes through verification) with temperature
    and top-k applied to target and draft: their joint law equals the target model's."""
    shape: dict[str, Any] = dict(vocab_size=8, bos_token_id=1, eos_token_id=7, pad_token_id=0)
    target = make_tiny_model(tmp_path / "t", **shape)
    draft = make_tiny_model(tmp_path / "d", seed=9, num_hidden_layers=1, **shape)
    params: dict[str, Any] = dict(max_tokens=3, temperature=0.9, top_k=6, ignore_eos=True)
    prompt = (3, 4, 5)
    hf = load_hf(target)
    exact: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        p1 = sampling_probs(hf(torch.tensor([prompt])).logits[0, -1], SamplingParams(**params))
        for t1 in range(8):
            logits = hf(torch.tensor([[*prompt, t1]])).logits[0, -1]
            p2 = sampling_probs(logits, SamplingParams(**params))
            for t2 in range(8):
                exact[(t1, t2)] = float(p1[t1] * p2[t2])
    engine = make_engine(
        target,
        max_num_seqs=512,
        num_blocks=2048,
        max_num_batched_tokens=4096,
        spec=SpecConfig(
            draft_model=str(draft),
            num_speculative_tokens=1,
            min_acceptance=0.0,
            max_batch_size=1024,
        ),
    )
    n = 4000
    specs = [
        GenerateRequest(
            f"r{i}", prompt, SamplingParams(seed=i, **params), speculation=SpeculationMode.COLOCATED
        )
        for i in range(n)
    ]
    out = engine.generate(specs)
    counts = Counter(tuple(out[f"r{i}"][0][:2]) for i in range(n))
    stats = speculator_of(engine).policy.stats
    assert stats.num_drafted_tokens >= n * 0.9  # nearly every second token was verified
    assert 0 < stats.num_accepted_tokens < stats.num_drafted_tokens  # both paths exercised
    # 64 outcomes, 4000 draws: sampling noise alone gives TV around 0.04.
    assert total_variation(counts, exact, n) < 0.07
