"""The scheduler owns the step (issue 18): schedule() plans drafts with the speculator and
reserves their KV slots, update_from_output() is the one writer of the requests' progress
and tells the speculator what was accepted; nothing else writes the scheduler's state.
Model-free: a fake speculator and hand-made runner outputs."""

from __future__ import annotations

import ast
from pathlib import Path

from workers.config import SchedulerConfig
from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager
from workers.protocol import FinishReason, GenerateRequest, SpeculationMode, TokenLogprob
from workers.sampling_params import SamplingParams
from workers.scheduler import Scheduler
from workers.scheduler_output import ModelRunnerOutput, SchedulerOutput
from workers.sequence import Request
from workers.spec.plan import NO_DRAFTS, DraftOutcome, DraftPlan, DraftRound
from workers.spec.proposers import Proposal
from workers.spec.speculator import Speculator

WORKERS = Path(__file__).resolve().parents[2] / "workers"
GREEDY = SamplingParams(max_tokens=8, temperature=0)


class FakePlanner:
    """Drafts (7, 8) for every eligible candidate; records what it is told."""

    def __init__(self, drafts: tuple[int, ...] = (7, 8)) -> None:
        self.drafts = drafts
        self.rounds: list[DraftRound] = []
        self.outcomes: list[DraftOutcome] = []
        self.released: list[str] = []

    def plan(self, round: DraftRound) -> DraftPlan:
        self.rounds.append(round)
        chosen = [c for c in round.candidates if c.eligible and c.room >= len(self.drafts)]
        if not round.tokens_known or not chosen:
            return NO_DRAFTS
        return DraftPlan(
            {c.seq_id: Proposal(self.drafts) for c in chosen},
            {c.seq_id: c.mode for c in chosen},
        )

    def observe(self, outcome: DraftOutcome) -> None:
        self.outcomes.append(outcome)

    def release(self, request_id: str) -> None:
        self.released.append(request_id)


def make_scheduler(planner: FakePlanner | None, num_blocks: int = 32) -> Scheduler:
    kv = KVCacheManager(BlockPool(num_blocks), block_size=4)
    config = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64)
    return Scheduler(config, kv, max_model_len=64, speculator=planner)


def add(scheduler: Scheduler, request_id: str, prompt: tuple[int, ...], **kwargs) -> Request:
    spec = GenerateRequest(request_id, prompt, kwargs.pop("sampling", GREEDY), **kwargs)
    req = Request(spec, len(scheduler.requests()), stop_ids=frozenset({2}))
    scheduler.add(req)
    return req


def output(step: SchedulerOutput, tokens: dict[int, tuple[int, ...]]) -> ModelRunnerOutput:
    """The runner's output where each sampling sequence gets the given tokens (else 50)."""
    return ModelRunnerOutput(
        {
            s.seq_id: tuple(TokenLogprob(t, -0.5) for t in tokens.get(s.seq_id, (50,)))
            for s in step.seqs
            if s.sample
        },
        {},
    )


def test_schedule_plans_drafts_and_reserves_their_slots() -> None:
    planner = FakePlanner()
    scheduler = make_scheduler(planner)
    req = add(scheduler, "r", (5, 6, 7, 8, 9), speculation=SpeculationMode.NGRAM)
    add(scheduler, "plain", (5, 6, 7))
    prefill = scheduler.schedule()
    assert prefill.draft_token_ids == {}  # prefills do not draft
    scheduler.update_from_output(prefill, output(prefill, {}))
    decode = scheduler.schedule()
    assert decode.draft_token_ids == {"r": (7, 8)}
    (s,) = [s for s in decode.seqs if s.request_id == "r"]
    assert s.token_ids == (50, 7, 8) and s.start_pos == 5
    # The scheduler reserved slots for the drafts: positions 5..7 fit the block table.
    assert len(s.block_table) * 4 >= s.start_pos + s.num_tokens
    assert scheduler.kv.block_tables[s.seq_id] == list(s.block_table)
    # The planner saw both scheduled decodes, only the drafting request as a candidate.
    (round,) = planner.rounds[-1:]
    assert [c.request_id for c in round.candidates] == ["r"]
    assert round.decode_only and round.tokens_known and round.batch_size == 2
    assert decode.speculation is not None and decode.speculation.modes[s.seq_id] == "ngram"
    assert req.seqs[0].num_computed_tokens == 5  # nothing moves before the output


def test_update_from_output_appends_accepted_drafts_and_tells_the_speculator() -> None:
    planner = FakePlanner()
    scheduler = make_scheduler(planner)
    req = add(scheduler, "r", (5, 6, 7, 8, 9, 10), speculation=SpeculationMode.NGRAM)
    prefill = scheduler.schedule()
    scheduler.update_from_output(prefill, output(prefill, {}))
    decode = scheduler.schedule()
    (s,) = decode.seqs
    seq = req.seqs[0]
    assert s.start_pos == 6 and len(scheduler.kv.block_tables[seq.seq_id]) == 3  # 9 slots
    # One draft accepted (7), the second rejected: the target's own token is 30.
    deltas = scheduler.update_from_output(decode, output(decode, {s.seq_id: (7, 30)}))
    assert [d.token_ids for d in deltas] == [(7, 30)]
    assert [(d.num_drafted_tokens, d.num_accepted_tokens) for d in deltas] == [(2, 1)]
    assert seq.output_token_ids == [50, 7, 30]
    assert seq.num_computed_tokens == 8  # the rejected draft's slot is not computed
    assert len(scheduler.kv.block_tables[seq.seq_id]) == 2  # the block past it is freed
    outcome = planner.outcomes[-1]
    (verified,) = outcome.verified
    assert (verified.request_id, verified.num_drafted, verified.num_accepted) == ("r", 2, 1)
    assert outcome.num_tokens == 2 and not outcome.finished


def test_finishing_and_aborting_return_every_block_and_release_the_speculator() -> None:
    planner = FakePlanner()
    scheduler = make_scheduler(planner, num_blocks=16)
    stops = add(scheduler, "stops", (5, 6, 7, 8, 9), speculation=SpeculationMode.NGRAM)
    add(scheduler, "aborted", (9, 10, 11), speculation=SpeculationMode.NGRAM)
    prefill = scheduler.schedule()
    scheduler.update_from_output(prefill, output(prefill, {}))
    decode = scheduler.schedule()
    assert set(decode.draft_token_ids) == {"stops", "aborted"}
    seq_id = stops.seqs[0].seq_id
    (aborted,) = scheduler.abort("aborted")  # while its step is out
    assert aborted.finish_reason == FinishReason.ABORT
    assert planner.released == ["aborted"]
    # The stop token (2) comes as the first draft's correction: the request ends there.
    deltas = scheduler.update_from_output(decode, output(decode, {seq_id: (2,)}))
    assert [(d.request_id, d.token_ids, d.finish_reason) for d in deltas] == [
        ("stops", (2,), FinishReason.STOP)
    ]
    assert planner.outcomes[-1].finished == {"stops", "aborted"}
    assert not scheduler.has_work()
    assert scheduler.kv.pool.num_free_blocks == 16
    assert scheduler.kv.block_tables == {}


def test_schedule_ahead_counts_the_step_in_flight_and_never_drafts() -> None:
    planner = FakePlanner()
    scheduler = make_scheduler(planner)
    req = add(scheduler, "r", (5, 6, 7), speculation=SpeculationMode.NGRAM)
    prefill = scheduler.schedule()
    ahead = scheduler.schedule_ahead(prefill)
    assert ahead is not None and ahead.draft_token_ids == {}
    assert not planner.rounds[-1].tokens_known
    assert planner.rounds[-1].modes == {SpeculationMode.NGRAM}
    seq = req.seqs[0]
    assert seq.num_pending == 1 and seq.num_computed_tokens == 3  # a placeholder in flight
    deltas = scheduler.update_from_output(prefill, output(prefill, {}))
    assert [d.token_ids for d in deltas] == [(50,)] and seq.num_pending == 0


def test_a_speculator_that_wants_drafts_keeps_the_next_step_from_going_ahead() -> None:
    class Waits(FakePlanner):
        def plan(self, round: DraftRound) -> DraftPlan:
            return DraftPlan(wait=True) if not round.tokens_known else super().plan(round)

    scheduler = make_scheduler(Waits())
    req = add(scheduler, "r", (5, 6, 7), speculation=SpeculationMode.NGRAM)
    prefill = scheduler.schedule()
    assert scheduler.schedule_ahead(prefill) is None
    assert req.seqs[0].num_pending == 0  # nothing was counted ahead
    scheduler.update_from_output(prefill, output(prefill, {}))
    assert scheduler.schedule().draft_token_ids == {"r": (7, 8)}


def test_the_speculator_has_two_step_calls() -> None:
    public = {
        name
        for name, value in vars(Speculator).items()
        if callable(value) and not name.startswith("_")
    }
    assert public == {"plan", "observe", "release"}


# -- who writes the scheduler's state -----------------------------------------------------

SCHEDULER_STATE = {"running", "waiting", "failures", "num_preemptions", "_counted"}
KV_WRITES = {"allocate_slots", "take_pending_copies", "requeue_copies", "trim", "fork", "free"}


def _tree(relative: str) -> ast.Module:
    return ast.parse((WORKERS / relative).read_text())


def _attributes(tree: ast.AST) -> set[str]:
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_only_the_scheduler_and_the_engine_import_the_scheduler() -> None:
    importers = {
        str(path.relative_to(WORKERS))
        for path in WORKERS.rglob("*.py")
        if "workers.scheduler" in _imports(ast.parse(path.read_text()))
    }
    assert importers == {"engine.py"}


def test_step_results_never_touches_the_scheduler() -> None:
    tree = _tree("step_results.py")
    assert not _attributes(tree) & SCHEDULER_STATE
    assert "workers.scheduler" not in _imports(tree)
    calls_on_scheduler = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "scheduler"
    }
    assert calls_on_scheduler == {"update_from_output"}  # apply_step, the former name


def test_the_speculator_sees_neither_queues_nor_the_kv_cache() -> None:
    for name in ("spec/speculator.py", "spec/plan.py", "spec/policy.py"):
        tree = _tree(name)
        assert not _attributes(tree) & (SCHEDULER_STATE | KV_WRITES), name
        assert not {"workers.scheduler", "workers.kv_cache.manager"} & _imports(tree), name


def test_the_scheduler_drafts_views_only_read() -> None:
    tree = _tree("scheduler_drafts.py")
    assert not _attributes(tree) & KV_WRITES
    targets = [
        target
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AugAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
    ]
    assert not [t for t in targets if isinstance(t, ast.Attribute | ast.Subscript)]


def test_the_engine_uses_the_scheduler_through_its_methods() -> None:
    tree = _tree("engine.py")
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "scheduler"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert used <= {
        "add",
        "abort",
        "schedule",
        "schedule_ahead",
        "discard",
        "update_from_output",
        "has_work",
        "live_request_ids",
        "live_seq_ids",
        "num_running",
        "num_waiting",
        "num_preemptions",
        "step_finished",
    }, used
    assert not _attributes(tree) & (SCHEDULER_STATE - {"num_preemptions"})
    assert not _attributes(tree) & (KV_WRITES - {"free"})
