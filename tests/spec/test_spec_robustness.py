"""Bad proposers never break generation; rejected drafts never leak KV blocks; the policy
drafts only where it pays."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import torch

from tests.factories import hf_greedy, make_engine, proposer_of, random_prompts, speculator_of
from workers.protocol import FinishReason, GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.draft_model import DraftModelProposer
from workers.spec.policy import SpecPolicy, best_k, expected_speedup
from workers.spec.proposers import NgramProposer, Proposal, RemoteProposer

GREEDY = SamplingParams(max_tokens=12, temperature=0)


def raises(queries):
    raise RuntimeError("draft replica is gone")


def hangs(queries):
    time.sleep(1.0)  # far past the 50 ms deadline
    return [Proposal((1,)) for _ in queries]


def too_long(queries):
    return [Proposal(tuple(range(3, 3 + q.k + 2))) for q in queries]


def out_of_vocab(queries):
    return [Proposal((5, 10_000)) for _ in queries]


def bad_probs(queries):
    return [Proposal((5, 6), torch.full((2, 128), 0.5)) for _ in queries]


def wrong_count(queries):
    return [Proposal((5,))]


@pytest.mark.parametrize("client", [raises, hangs, too_long, out_of_vocab, bad_probs, wrong_count])
def test_bad_remote_proposer_degrades_to_plain_decoding(llama_dir: Path, llama_hf, client) -> None:
    engine = make_engine(llama_dir, spec=SpecConfig(remote_timeout_s=0.05))
    engine.attach_remote_draft(client)
    prompts = random_prompts([5, 9, 14])
    specs = [
        GenerateRequest(f"r{i}", tuple(p), GREEDY, speculation=SpeculationMode.REMOTE)
        for i, p in enumerate(prompts)
    ]
    out = engine.generate(specs)
    for i, p in enumerate(prompts):
        assert out[f"r{i}"][0] == hf_greedy(llama_hf, p, 12)
    assert proposer_of(engine, SpeculationMode.REMOTE, RemoteProposer).num_failures > 0
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_blocks_accounted_for_after_random_rejections_and_aborts(llama_dir: Path) -> None:
    rng = random.Random(1)
    engine = make_engine(
        llama_dir,
        num_blocks=40,
        block_size=4,
        max_num_seqs=8,
        spec=SpecConfig(
            draft_model=str(llama_dir),
            draft_num_blocks=24,
            min_acceptance=0.0,
            draft_cost_ratio=0.0,
        ),
    )
    engine.attach_remote_draft(
        lambda qs: [Proposal(tuple(rng.randrange(128) for _ in range(q.k))) for q in qs]
    )
    modes = [SpeculationMode.COLOCATED, SpeculationMode.NGRAM, SpeculationMode.REMOTE]
    live: set[str] = set()
    for i in range(150):
        params = SamplingParams(
            max_tokens=rng.randint(2, 16), temperature=rng.choice([0, 1]), seed=i
        )
        prompt = tuple(rng.randrange(3, 128) for _ in range(rng.randint(1, 24)))
        engine.add_request(GenerateRequest(f"r{i}", prompt, params, speculation=modes[i % 3]))
        live.add(f"r{i}")
        for _ in range(rng.randint(0, 3)):
            for d in engine.step():
                if d.finished:
                    live.discard(d.request_id)
        if live and rng.random() < 0.25:
            victim = rng.choice(sorted(live))
            assert all(d.finish_reason == FinishReason.ABORT for d in engine.abort(victim))
            live.discard(victim)
    while engine.has_unfinished():
        engine.step()
    stats = speculator_of(engine).policy.stats
    assert stats.num_drafted_tokens > stats.num_accepted_tokens > 0
    assert engine.stats().num_free_blocks == 40
    assert all(b.ref_cnt == 0 for b in engine.kv.pool.blocks)
    draft = proposer_of(engine, SpeculationMode.COLOCATED, DraftModelProposer)
    assert draft.kv.pool.num_free_blocks == 24  # finished requests released their drafts


def test_expected_speedup_and_best_k() -> None:
    assert expected_speedup(0.8, 0, 0.1) == 1.0
    assert expected_speedup(0.8, 4, 0.0) == pytest.approx((1 - 0.8**5) / 0.2)
    assert best_k(0.95, 0.05, 8) >= 6
    assert best_k(0.5, 0.05, 8) <= 3
    assert best_k(0.05, 0.5, 8) == 0


def test_policy_steps_aside_for_big_batches_and_low_acceptance() -> None:
    policy = SpecPolicy(
        SpecConfig(num_speculative_tokens=4, max_batch_size=8, min_acceptance=0.3, probe_interval=3)
    )
    assert policy.num_drafts("a", "g", batch_size=4, room=10) > 0
    assert policy.num_drafts("a", "g", batch_size=9, room=10) == 0
    assert policy.num_drafts("a", "g", batch_size=4, room=1) == 1
    for _ in range(10):
        policy.record("a", None, "g", drafted=4, accepted=0)
    draws = [policy.num_drafts("a", "g", batch_size=1, room=10) for _ in range(6)]
    assert draws == [0, 0, 1, 0, 0, 1]  # only probes while acceptance is low
    assert policy.stats.acceptance_rate == 0.0
    # A new request of the same adapter starts from the adapter's (low) acceptance.
    assert policy.num_drafts("b", "g", batch_size=1, room=10) == 0


def test_ngram_proposer_finds_the_latest_longest_match() -> None:
    proposer = NgramProposer(1, 3)
    tokens = (1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3)
    from workers.spec.proposers import DraftQuery

    [proposal] = proposer.propose([DraftQuery("x", tokens, 3, 2, GREEDY)])
    assert proposal == Proposal((7, 8))
    assert proposer.propose([DraftQuery("x", (1, 2, 3), 3, 2, GREEDY)]) == [None]


def test_throughput_gate_keeps_the_faster_choice_and_probes() -> None:
    from workers.spec.throughput_gate import ThroughputGate

    gate = ThroughputGate(probe_interval=4)
    choices = []
    for _ in range(40):
        drafting = gate.allow(8)
        choices.append(drafting)
        # Drafting is measurably slower here: 50 tokens/s against 100 without.
        gate.record(8, drafting, tokens=50 if drafting else 100, seconds=1.0)
    # Each choice measured once, then plain decoding wins; drafting is re-tried, every
    # 4 * 2^2 = 16 steps (the interval times the squared loss).
    assert choices[:16] == [True] + [False] * 14 + [True]
    assert [i for i, c in enumerate(choices) if c] == [0, 15, 31]
    assert gate.allow(64) is True  # other batch sizes are measured on their own


def _drafted_tokens(engine, request: GenerateRequest) -> tuple[list[int], int]:
    engine.add_request(request)
    tokens: list[int] = []
    drafted = 0
    while engine.has_unfinished():
        for delta in engine.step():
            tokens += delta.token_ids
            drafted = delta.num_drafted_tokens
    return tokens, drafted


@pytest.mark.parametrize("gated", [True, False])
def test_throughput_gate_can_be_turned_off(llama_dir: Path, llama_hf, gated: bool) -> None:
    spec = SpecConfig(
        draft_model=str(llama_dir), min_acceptance=0.0, throughput_gate=gated, draft_num_blocks=64
    )
    engine = make_engine(llama_dir, spec=spec)
    gate = speculator_of(engine).gate
    for _ in range(3):  # drafting has measured ten times slower at batch size 1
        gate.record(1, True, tokens=10, seconds=1.0)
        gate.record(1, False, tokens=100, seconds=1.0)
    prompt = random_prompts([9])[0]
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    request = GenerateRequest("r", tuple(prompt), params, speculation=SpeculationMode.COLOCATED)
    tokens, drafted = _drafted_tokens(engine, request)
    assert tokens == hf_greedy(llama_hf, prompt, 16)
    # The draft is the target itself, so every draft is accepted: ungated, each decode step
    # drafts k = 4 and yields 5 tokens (1 + 5 + 5 + 5 = 16 in three rounds of drafts).
    assert drafted == (0 if gated else 12)
