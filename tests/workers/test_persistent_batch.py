"""The engine with the runner's persistent batch (issue 18): many requests join and leave
(finishes, aborts, preemptions, chunked prefills, prefix-cache hits, n samples, beams,
penalties, n-gram drafts), with and without async scheduling. At every launch the batch's
block tables and token histories equal the scheduler's, no row outlives its sequence, and
every request's output is the one it gets alone (greedy ones: transformers')."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.factories import hf_greedy, make_engine
from workers.engine import LLMEngine
from workers.model_runner import PendingOutput
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.scheduler_output import SchedulerOutput
from workers.spec.config import SpecConfig


def workload(rng: random.Random, count: int) -> list[GenerateRequest]:
    prefixes = [[rng.randrange(3, 128) for _ in range(12)] for _ in range(3)]
    specs = []
    for i in range(count):
        prompt = rng.choice(prefixes)[: rng.randint(0, 12)]
        prompt += [rng.randrange(3, 128) for _ in range(rng.randint(1, 10))]
        kind = i % 6
        if kind == 1:
            params = SamplingParams(max_tokens=8, temperature=0, repetition_penalty=1.4)
        elif kind == 2:
            params = SamplingParams(max_tokens=6, temperature=0, frequency_penalty=0.7)
        elif kind == 3:
            params = SamplingParams(max_tokens=6, temperature=1.0, n=2, seed=i)
        elif kind == 4 and i % 12 == 4:
            params = SamplingParams(max_tokens=4, beam_width=2)
        else:
            params = SamplingParams(max_tokens=rng.randint(1, 14), temperature=0)
        mode = SpeculationMode.NONE
        if rng.random() < 0.3:  # a repeating prompt: the n-gram proposer drafts from it
            mode = SpeculationMode.NGRAM
            prompt = (prompt[-3:] * 4)[: rng.randint(7, 12)]
        specs.append(GenerateRequest(f"r{i}", tuple(prompt), params, speculation=mode))
    return specs


def checked_runner(engine: LLMEngine) -> tuple[list[int], list[str]]:
    """Check the runner's batch each time a step's differences are applied (launch raising
    would only have the engine run the step again: mismatches are collected instead).
    Returns the number of rows after each launch, and the mismatches."""
    runner, scheduler, kv = engine.runner, engine.scheduler, engine.kv
    launch = runner._launch
    rows: list[int] = []
    mismatches: list[str] = []

    def check(step: SchedulerOutput) -> None:
        seqs = {seq.seq_id: seq for req in scheduler.requests() for seq in req.seqs}
        if not set(runner.batch.row_of) <= set(seqs):
            mismatches.append(f"rows of gone sequences: {set(runner.batch.row_of) - set(seqs)}")
        for s in step.seqs:
            seq = seqs[s.seq_id]
            known = seq.token_ids[: seq.num_known_tokens]
            if runner.batch.block_table(s.seq_id) != kv.block_tables[s.seq_id]:
                mismatches.append(f"block table of {s.seq_id}")
            if runner.batch.history(s.seq_id) != known:
                mismatches.append(f"history of {s.seq_id}: {runner.batch.history(s.seq_id)}")
            penalized = s.sample and s.sampling.has_penalties
            if penalized and list(s.prompt_token_ids + s.output_token_ids) != known:
                mismatches.append(f"penalty history of {s.seq_id}")

    def checked(step: SchedulerOutput) -> PendingOutput:
        check(step)
        rows.append(runner.batch.num_rows)
        return launch(step)

    runner._launch = checked  # type: ignore[method-assign]
    return rows, mismatches


def run(engine: LLMEngine, specs: list[GenerateRequest], rng: random.Random) -> dict:
    """Requests join a few at a time while earlier ones run; some are aborted."""
    outputs: dict[str, dict[int, list[int]]] = {}
    aborted: set[str] = set()
    pending = list(specs)
    while pending or engine.has_unfinished():
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            if pending:
                spec = pending.pop(0)
                engine.add_request(spec)
                outputs[spec.request_id] = {}
        if outputs and rng.random() < 0.05:
            victim = rng.choice(sorted(outputs))
            if engine.abort(victim):
                aborted.add(victim)
        for delta in engine.step():
            if delta.request_id not in aborted:
                outputs[delta.request_id].setdefault(delta.index, []).extend(delta.token_ids)
    return {
        rid: [out[i] for i in sorted(out)] for rid, out in outputs.items() if rid not in aborted
    }


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_requests_joining_and_leaving_keep_the_batch_and_the_outputs(
    llama_dir: Path, llama_hf, overlap: bool
) -> None:
    rng = random.Random(11)
    specs = workload(rng, 36)
    spec_config = SpecConfig(num_speculative_tokens=3, min_acceptance=0.0)
    engine = make_engine(
        llama_dir,
        num_blocks=18,
        max_num_seqs=6,
        max_num_batched_tokens=20,
        async_scheduling=overlap,
        spec=spec_config,
    )
    rows, mismatches = checked_runner(engine)
    got = run(engine, specs, rng)
    assert mismatches == []
    assert engine.speculator is not None
    assert engine.speculator.policy.stats.num_drafted_tokens > 0
    assert engine.scheduler.num_preemptions > 0 and engine.kv.prefix_hit_tokens > 0
    assert len(got) > 30
    alone = make_engine(llama_dir, spec=spec_config)
    for spec in specs:
        if spec.request_id not in got:
            continue
        expected = alone.generate([spec])[spec.request_id]
        assert got[spec.request_id] == expected, spec
        params = spec.sampling
        if params.greedy and not params.changes_argmax and not params.use_beam_search:
            prompt = list(spec.prompt_token_ids)
            assert expected == [hf_greedy(llama_hf, prompt, params.max_tokens)]
    engine.step()  # the finished requests' rows go with the next step
    assert engine.runner.batch.num_rows == 0
    assert max(rows) <= 6 * 2  # rows are dropped as their sequences leave
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks
