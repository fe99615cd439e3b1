"""The step protocol with speculation on a real engine (issue 18): schedule() carries the
drafts, update_from_output() reports what was accepted to the speculator, and every KV
block comes back, with and without async scheduling."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.factories import make_engine, proposer_of, random_prompts, speculator_of
from workers.protocol import FinishReason, GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.scheduler_output import SchedulerOutput
from workers.spec.config import SpecConfig
from workers.spec.draft_model import DraftModelProposer
from workers.spec.plan import DraftOutcome
from workers.spec.proposers import Proposal

GREEDY = SamplingParams(max_tokens=16, temperature=0)


def test_schedule_carries_the_drafts_and_the_speculator_observes_acceptance(
    llama_dir: Path,
) -> None:
    engine = make_engine(llama_dir, spec=SpecConfig(draft_model=str(llama_dir)))
    scheduled: list[SchedulerOutput] = []
    outcomes: list[DraftOutcome] = []
    schedule, observe = engine.scheduler.schedule, speculator_of(engine).observe

    def recording_schedule(*args, **kwargs) -> SchedulerOutput:
        scheduled.append(schedule(*args, **kwargs))
        return scheduled[-1]

    def recording_observe(outcome: DraftOutcome) -> None:
        outcomes.append(outcome)
        observe(outcome)

    engine.scheduler.schedule = recording_schedule  # type: ignore[method-assign]
    speculator_of(engine).observe = recording_observe  # type: ignore[method-assign]
    prompts = random_prompts([6, 11])
    specs = [
        GenerateRequest(f"r{i}", tuple(p), GREEDY, speculation=SpeculationMode.COLOCATED)
        for i, p in enumerate(prompts)
    ]
    plain = make_engine(llama_dir).generate(specs)
    assert engine.generate(specs) == plain
    drafted = [step for step in scheduled if step.draft_token_ids]
    assert drafted
    for step in drafted:
        for s in step.seqs:
            # the scheduler reserved the drafts' slots: every position has a block
            assert len(s.block_table) * 4 >= s.start_pos + s.num_tokens
            if s.spec_token_ids:
                assert s.token_ids[1:] == s.spec_token_ids
                assert step.draft_token_ids[s.request_id] == s.spec_token_ids
    assert len(outcomes) == len(scheduled)  # one observation per step, no other channel
    stats = speculator_of(engine).policy.stats
    assert sum(v.num_drafted for o in outcomes for v in o.verified) == stats.num_drafted_tokens
    assert sum(v.num_accepted for o in outcomes for v in o.verified) == stats.num_accepted_tokens
    assert stats.acceptance_rate > 0.9  # the self-draft
    assert set().union(*(o.finished for o in outcomes)) == {"r0", "r1"}
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_every_block_comes_back_after_finishes_and_aborts(
    llama_dir: Path, async_scheduling: bool
) -> None:
    """Requests of every mode, sampled and greedy, aborted at random (with a step in
    flight, under async scheduling), while the gate switches drafting on and off: every
    block of the target and the draft returns, and the speculator forgets every request."""
    rng = random.Random(7)
    engine = make_engine(
        llama_dir,
        num_blocks=48,
        block_size=4,
        max_num_seqs=8,
        async_scheduling=async_scheduling,
        spec=SpecConfig(draft_model=str(llama_dir), draft_num_blocks=32, min_acceptance=0.0),
    )
    engine.attach_remote_draft(
        lambda qs: [Proposal(tuple(rng.randrange(128) for _ in range(q.k))) for q in qs]
    )
    speculator_of(engine).gate.allow = lambda batch_size: rng.random() < 0.5  # type: ignore[method-assign]
    modes = [SpeculationMode.COLOCATED, SpeculationMode.NGRAM, SpeculationMode.REMOTE]
    live: set[str] = set()
    overlapped = 0
    for i in range(60):
        params = SamplingParams(
            max_tokens=rng.randint(2, 12), temperature=rng.choice([0, 0, 1]), seed=i
        )
        prompt = tuple(rng.randrange(3, 128) for _ in range(rng.randint(1, 20)))
        engine.add_request(GenerateRequest(f"r{i}", prompt, params, speculation=modes[i % 3]))
        live.add(f"r{i}")
        for _ in range(rng.randint(0, 3)):
            for d in engine.step():
                if d.finished:
                    live.discard(d.request_id)
            overlapped += engine.step_in_flight
        if live and rng.random() < 0.3:
            victim = rng.choice(sorted(live))
            assert all(d.finish_reason == FinishReason.ABORT for d in engine.abort(victim))
            live.discard(victim)
    while engine.has_unfinished():
        engine.step()
    assert (overlapped > 0) == async_scheduling
    assert speculator_of(engine).policy.stats.num_drafted_tokens > 0
    assert engine.stats().num_free_blocks == 48
    assert engine.kv.block_tables == {}
    assert all(b.ref_cnt == 0 for b in engine.kv.pool.blocks)
    draft = proposer_of(engine, SpeculationMode.COLOCATED, DraftModelProposer)
    assert draft.kv.pool.num_free_blocks == 32
    assert speculator_of(engine).policy._requests == {}  # every request's estimate released
