"""Speculator: after the scheduler has planned a step, give eligible decodes drafted tokens
(they become extra query positions of the same step); afterwards, learn from the outcome."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace

from workers.kv_cache.manager import KVCacheManager
from workers.protocol import SpeculationMode
from workers.scheduler import Scheduler
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq, SchedulerOutput
from workers.sequence import Request, Sequence
from workers.spec.config import SpecConfig
from workers.spec.policy import SpecPolicy
from workers.spec.proposers import DraftQuery, Proposal, Proposer
from workers.spec.throughput_gate import ThroughputGate

logger = logging.getLogger(__name__)


class Speculator:
    def __init__(
        self, config: SpecConfig, proposers: dict[SpeculationMode, Proposer], max_model_len: int
    ) -> None:
        self.config = config
        self.proposers = proposers
        self.policy = SpecPolicy(config)
        self.max_model_len = max_model_len
        self._modes: dict[int, SpeculationMode] = {}  # proposer of each drafted sequence
        self.gate = ThroughputGate(config.probe_interval * 2)
        # (batch, drafted) of each launched step not yet observed, in launch order; None: a
        # step that is no sample of either choice's speed.
        self._measures: deque[tuple[int, bool] | None] = deque()
        self._decided: bool | None = None  # the gate's answer for the next step, asked early
        self.overlaps = False  # whether the engine overlaps steps that do not draft

    def may_skip_drafts(self, scheduler: Scheduler) -> bool:
        """Whether the next step can go without drafts, so that it can be scheduled before
        the current one's tokens are known (async scheduling): no running request asks for
        them, or the gate says drafting does not pay at this batch size now."""
        if not any(req.spec.speculation in self.proposers for req in scheduler.running):
            return True
        batch = scheduler.num_running_seqs
        if batch > self.config.max_batch_size:
            return True  # the policy drafts nothing at this batch size
        self._decided = self.gate.allow(batch)
        return not self._decided

    def scheduled_without_drafts(self, scheduler: Scheduler, step: SchedulerOutput) -> None:
        """A step was launched without asking for drafts (after may_skip_drafts)."""
        plain = self._decided is False and all(s.num_tokens == 1 for s in step.seqs)
        self._measures.append((scheduler.num_running_seqs, False) if plain else None)
        self._decided = None

    def forget_decision(self) -> None:
        """The step ahead that may_skip_drafts answered for scheduled nothing: the answer
        does not carry over to the next step, which may hold another batch."""
        self._decided = None

    def attach_drafts(self, scheduler: Scheduler, step: SchedulerOutput) -> SchedulerOutput:
        """The step with drafts for the decodes that ask for them, where they pay; every
        step it returns must then be launched and observed."""
        decided, self._decided = self._decided, None
        self._measures.append(None)
        owners = {seq.seq_id: (req, seq) for req in scheduler.running for seq in req.seqs}
        candidates = [
            (s, *owners[s.seq_id])
            for s in step.seqs
            if owners[s.seq_id][0].spec.speculation in self.proposers
        ]
        if not candidates:
            return step
        batch = scheduler.num_running_seqs
        # Only steps of decodes alone compare fairly (a prefill chunk changes the cost). The
        # gate decides first: a step that will not draft does no per-request work.
        if all(s.num_tokens == 1 for s in step.seqs):
            drafting = self.gate.allow(batch) if decided is None else decided
            self._measures[-1] = (batch, drafting)
            if not drafting:
                return step
        budget = scheduler.config.max_num_batched_tokens - step.num_tokens
        queries: dict[SpeculationMode, list[tuple[ScheduledSeq, DraftQuery]]] = {}
        for s, req, seq in candidates:
            k = self._num_drafts(req, seq, s, batch)
            if k > 0 and budget >= k:
                budget -= k
                queries.setdefault(req.spec.speculation, []).append((s, _query(req, seq, k)))
        drafts: dict[int, Proposal] = {}
        self._modes = {}
        for mode, items in queries.items():
            proposals = self._propose(mode, [q for _, q in items])
            for (s, _), proposal in zip(items, proposals, strict=True):
                if proposal is not None:
                    drafts[s.seq_id] = proposal
                    self._modes[s.seq_id] = mode
        if not drafts:
            # Allowed, but the policy drafted nothing. With async scheduling the step waited
            # for its tokens for nothing, which counts against allowing drafts (that choice
            # would otherwise never be measured); without, it is a plain step like any other.
            if not self.overlaps:
                self._measures[-1] = None
            return step
        seqs = tuple(self._extend(scheduler.kv, s, drafts.get(s.seq_id)) for s in step.seqs)
        return replace(
            step, seqs=seqs, block_copies=step.block_copies + scheduler.kv.take_pending_copies()
        )

    def _propose(self, mode: SpeculationMode, queries: list[DraftQuery]) -> list[Proposal | None]:
        """The proposer's drafts; if it raises, or proposes from a distribution that is not
        finite, those requests decode plainly this step (lossless: drafts only save time)."""
        try:
            proposals = self.proposers[mode].propose(queries)
        except Exception:
            logger.exception("the %s proposer failed; decoding its requests plainly", mode)
            return [None] * len(queries)
        return [
            None
            if p is not None and p.probs is not None and not bool(p.probs.isfinite().all())
            else p
            for p in proposals
        ]

    def observe(
        self,
        scheduler: Scheduler,
        step: SchedulerOutput,
        result: ModelRunnerOutput,
        seconds: float = 0.0,
        tokens: int = 0,
    ) -> None:
        """Update acceptance estimates and the measured throughput with and without drafts
        (`tokens` the step gave requests in `seconds`, drafting included); release state of
        finished requests."""
        measured = self._measures.popleft() if self._measures else None
        if measured is not None:
            batch, drafted = measured
            self.gate.record(batch, drafted, tokens, seconds)
        live = {req.request_id for req in scheduler.running}
        for s in step.seqs:
            if s.spec_token_ids:
                accepted = len(result.sampled.get(s.seq_id, ())) - 1
                group = _group(s.adapter_key, self._modes[s.seq_id])
                self.policy.record(
                    s.request_id, s.adapter_key, group, len(s.spec_token_ids), max(accepted, 0)
                )
            if s.request_id not in live:
                self.release(s.request_id)

    def release(self, request_id: str) -> None:
        self.policy.forget(request_id)
        for proposer in self.proposers.values():
            proposer.release(request_id)

    def _num_drafts(self, req: Request, seq: Sequence, s: ScheduledSeq, batch: int) -> int:
        mode = req.spec.speculation
        params = req.sampling
        eligible = (
            mode in self.proposers
            and s.sample
            and s.num_tokens == 1
            and params.n == 1
            and not params.use_beam_search
        )
        if not eligible:
            return 0
        room = (
            min(params.max_tokens - seq.num_output_tokens, self.max_model_len - seq.num_tokens) - 1
        )
        return self.policy.num_drafts(req.request_id, _group(req.adapter_key, mode), batch, room)

    def _extend(
        self, kv: KVCacheManager, s: ScheduledSeq, proposal: Proposal | None
    ) -> ScheduledSeq:
        if proposal is None:
            return s
        tokens = proposal.token_ids
        if kv.allocate_slots(s.seq_id, s.start_pos + 1, len(tokens)) is None:
            return s  # no room for the drafts: decode plainly this step
        return replace(
            s,
            token_ids=s.token_ids + tokens,
            spec_token_ids=tokens,
            spec_probs=proposal.probs,
            block_table=tuple(kv.block_tables[s.seq_id]),
        )


def _query(req: Request, seq: Sequence, k: int) -> DraftQuery:
    return DraftQuery(
        key=req.request_id,
        token_ids=tuple(seq.token_ids),
        num_prompt_tokens=seq.num_prompt_tokens,
        k=k,
        sampling=req.sampling,
        stop_ids=tuple(sorted(req.stop_ids)),
        seed=req.sampling.seed,
    )


def _group(adapter_key: str | None, mode: SpeculationMode) -> str:
    """Requests whose acceptance is alike: the same adapter drafted by the same proposer."""
    return f"{adapter_key or 'base'}/{mode}"
