"""The scheduler sends the runner differences (issue 18): a runner that applies only what
each SchedulerOutput carries, and appends the tokens it samples itself, holds exactly the
block tables and token histories the scheduler's own state gives, after random workloads
of joins, aborts, stops, chunked prefills, prefix-cache hits, preemptions, n-sample forks,
beams (copy-on-write), drafts, async steps launched ahead and steps ahead dropped, with
plain greedy decodes sent as ScheduledSeqs or as RunningDecodes columns.
Model-free: random runner outputs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.config import SchedulerConfig
from workers.input_batch import InputBatch
from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager
from workers.protocol import GenerateRequest, SpeculationMode, TokenLogprob
from workers.sampling_params import SamplingParams
from workers.scheduler import Scheduler
from workers.scheduler_output import ModelRunnerOutput, SchedulerOutput
from workers.sequence import Request
from workers.spec.plan import NO_DRAFTS, DraftOutcome, DraftPlan, DraftRound
from workers.spec.proposers import Proposal

STOP = 2
BLOCK = 4


class Drafter:
    """Drafts 1-3 tokens for the eligible candidates of some steps."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def plan(self, round: DraftRound) -> DraftPlan:
        if not round.tokens_known:
            return NO_DRAFTS
        drafts = {}
        for c in round.candidates:
            k = self.rng.randint(1, 3)
            if c.eligible and k <= c.room and self.rng.random() < 0.8:
                drafts[c.seq_id] = Proposal(tuple(self.rng.randrange(3, 12) for _ in range(k)))
        return DraftPlan(drafts, {s: SpeculationMode.NGRAM for s in drafts})

    def observe(self, outcome: DraftOutcome) -> None:
        pass

    def release(self, request_id: str) -> None:
        pass


class Runner:
    """Applies a step's differences the way ModelRunner.launch does, and checks them."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.batch = InputBatch(rows=2, max_blocks=2, max_tokens=8)

    def launch(self, step: SchedulerOutput, apply: bool = True) -> None:
        if not apply:
            return
        self.batch.remove(step.freed_seq_ids)
        self.batch.update(step.seqs)
        if step.decodes is not None:
            self.batch.update_blocks(step.decodes.blocks)
        self.check(step)

    def check(self, step: SchedulerOutput) -> None:
        """The batch against a rebuild from the scheduler's sequences and block tables."""
        kv = self.scheduler.kv
        seqs = {seq.seq_id: seq for req in self.scheduler.requests() for seq in req.seqs}
        assert set(self.batch.row_of) <= set(seqs)  # no row outlives its sequence
        for s in step.seqs:
            seq = seqs[s.seq_id]
            assert self.batch.block_table(s.seq_id) == kv.block_tables[s.seq_id]
            assert s.block_table == tuple(kv.block_tables[s.seq_id])  # the snapshot
            assert self.batch.history(s.seq_id) == seq.token_ids[: seq.num_known_tokens]
        decodes = step.decodes
        if decodes is not None:
            assert not {s.seq_id for s in step.seqs} & set(decodes.seq_ids)
            for seq_id, token_id, position in zip(
                decodes.seq_ids, decodes.token_ids, decodes.positions, strict=True
            ):
                seq = seqs[seq_id]
                assert position == seq.num_computed_tokens  # not counted before its output
                assert seq.token_ids[position] == token_id and position == seq.num_tokens - 1
                assert self.batch.block_table(seq_id) == kv.block_tables[seq_id]
                assert self.batch.history(seq_id) == seq.token_ids[: seq.num_known_tokens]
        for seq_id in self.batch.row_of:  # held but not scheduled: the pending diff fixes it
            if seq_id not in kv.block_tables or kv.changes.is_new(seq_id):
                continue
            update = kv.changes.update(seq_id, kv.block_tables[seq_id])
            table = self.batch.block_table(seq_id)[: update.num_kept]
            assert table + list(update.new_block_ids) == kv.block_tables[seq_id]

    def output(self, step: SchedulerOutput, rng: random.Random) -> ModelRunnerOutput:
        sampled: dict[int, tuple[TokenLogprob, ...]] = {}
        beams: dict[int, tuple[tuple[int, float], ...]] = {}
        for s in step.seqs:
            if not s.sample:
                continue
            if s.beam_topk:
                tokens = [*rng.sample(range(3, 30), s.beam_topk - 1), STOP]
                rng.shuffle(tokens)
                beams[s.seq_id] = tuple((t, -0.1 * (i + 1)) for i, t in enumerate(tokens))
                continue
            accepted = rng.randint(0, len(s.spec_token_ids))
            tokens = [*s.spec_token_ids[:accepted], rng.choice([STOP, *range(3, 12)])]
            sampled[s.seq_id] = tuple(TokenLogprob(t, -0.5) for t in tokens)
        decoded: tuple[int, ...] = ()
        if step.decodes is not None:
            decoded = tuple(rng.choice([STOP, *range(3, 12)]) for _ in step.decodes.seq_ids)
        output = ModelRunnerOutput(sampled, beams, decoded=decoded)
        self.batch.record(step.seqs, output)
        if step.decodes is not None:
            self.batch.record_decodes(step.decodes, output)
        return output


def random_request(rng: random.Random, i: int, prefixes: list[list[int]]) -> Request:
    prompt = [*rng.choice(prefixes)[: rng.randint(0, 9)], rng.randrange(3, 40)]
    prompt += [rng.randrange(3, 40) for _ in range(rng.randint(0, 6))]
    kind = rng.random()
    if kind < 0.15:
        params = SamplingParams(max_tokens=rng.randint(1, 6), n=rng.randint(2, 3), seed=i)
    elif kind < 0.25:
        params = SamplingParams(max_tokens=rng.randint(1, 5), beam_width=2)
    else:
        params = SamplingParams(max_tokens=rng.randint(1, 10), temperature=0)
    mode = SpeculationMode.NGRAM if rng.random() < 0.6 else SpeculationMode.NONE
    spec = GenerateRequest(f"r{i}", tuple(prompt), params, speculation=mode)
    return Request(spec, i, stop_ids=frozenset({STOP}))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    num_blocks=st.integers(12, 40),
    budget=st.sampled_from([8, 16, 64]),
    overlap=st.booleans(),
    drafts=st.booleans(),
    columns=st.booleans(),
)
def test_runner_state_from_differences_equals_the_schedulers(
    seed: int, num_blocks: int, budget: int, overlap: bool, drafts: bool, columns: bool
) -> None:
    rng = random.Random(seed)
    kv = KVCacheManager(BlockPool(num_blocks), block_size=BLOCK)
    config = SchedulerConfig(max_num_seqs=6, max_num_batched_tokens=budget)
    speculator = Drafter(rng) if drafts else None
    scheduler = Scheduler(
        config, kv, max_model_len=40, speculator=speculator, decode_columns=columns
    )
    runner = Runner(scheduler)
    prefixes = [[rng.randrange(3, 40) for _ in range(9)] for _ in range(3)]
    in_flight: SchedulerOutput | None = None
    added = 0
    for _ in range(80):
        for _ in range(rng.choice([0, 0, 1, 2])):
            scheduler.add(random_request(rng, added, prefixes))
            added += 1
        if rng.random() < 0.1 and scheduler.requests():
            scheduler.abort(rng.choice(scheduler.requests()).request_id)
        current, in_flight = in_flight, None
        if current is None:
            current = scheduler.schedule()
            runner.launch(current)
        if overlap:
            ahead = scheduler.schedule_ahead(current)
            if ahead is not None and rng.random() < 0.1:  # its launch raised: dropped
                runner.launch(ahead, apply=rng.random() < 0.5)
                scheduler.discard(ahead)
            elif ahead is not None:
                runner.launch(ahead)
                in_flight = None if ahead.empty else ahead
        deltas = scheduler.update_from_output(current, runner.output(current, rng))
        assert scheduler.step_finished == any(d.finished for d in deltas)
    while scheduler.has_work() or in_flight is not None:  # drain, in sync steps
        step = in_flight or scheduler.schedule()
        if in_flight is None:
            runner.launch(step)
        in_flight = None
        deltas = scheduler.update_from_output(step, runner.output(step, rng))
        assert scheduler.step_finished == any(d.finished for d in deltas)
    runner.launch(scheduler.schedule())  # the last rows go with the next step
    assert runner.batch.num_rows == 0
    assert kv.pool.num_free_blocks == num_blocks
