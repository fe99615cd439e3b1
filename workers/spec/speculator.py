"""Speculator: proposes drafts for the decodes the scheduler plans (they become extra query
positions of the same step) where they pay, and learns from what verification accepted.
Two calls, both made by the scheduler: plan() and observe() (see workers.spec.plan)."""

from __future__ import annotations

import logging

from workers.protocol import SpeculationMode
from workers.spec.config import SpecConfig
from workers.spec.plan import NO_DRAFTS, DraftCandidate, DraftOutcome, DraftPlan, DraftRound
from workers.spec.policy import SpecPolicy
from workers.spec.proposers import DraftQuery, Proposal, Proposer
from workers.spec.throughput_gate import AlwaysDraft, DraftGate, ThroughputGate

logger = logging.getLogger(__name__)


class Speculator:
    def __init__(
        self,
        config: SpecConfig,
        proposers: dict[SpeculationMode, Proposer],
        overlaps: bool = False,
    ) -> None:
        """overlaps: whether the engine overlaps steps that do not draft (async
        scheduling)."""
        self.config = config
        self.proposers = proposers
        self.policy = SpecPolicy(config)
        self.gate: DraftGate = (
            ThroughputGate(config.probe_interval * 2) if config.throughput_gate else AlwaysDraft()
        )
        self.overlaps = overlaps
        # The gate's answer for a step that waits for its tokens to draft (asked by the
        # ahead round before it; the next round to know its tokens uses it).
        self._decided: bool | None = None

    def plan(self, round: DraftRound) -> DraftPlan:
        """Drafts for the round's eligible candidates, where they pay; for a round ahead of
        a step in flight, whether the step should wait for its tokens instead."""
        if not round.tokens_known:
            return self._plan_ahead(round)
        decided, self._decided = self._decided, None
        candidates = [c for c in round.candidates if c.mode in self.proposers]
        if not candidates:
            return NO_DRAFTS
        batch = round.batch_size
        # Only steps of decodes alone compare fairly (a prefill chunk changes the cost). The
        # gate decides first: a step that will not draft does no per-request work.
        gate: bool | None = None
        if round.decode_only:
            gate = self.gate.allow(batch) if decided is None else decided
            if not gate:
                return DraftPlan(gate=False)
        budget = round.budget
        queries: dict[SpeculationMode, list[tuple[DraftCandidate, DraftQuery]]] = {}
        for c in candidates:
            k = self._num_drafts(c, batch)
            if k > 0 and budget >= k:
                budget -= k
                queries.setdefault(c.mode, []).append((c, c.query(k)))
        drafts: dict[int, Proposal] = {}
        modes: dict[int, SpeculationMode] = {}
        for mode, items in queries.items():
            proposals = self._propose(mode, [q for _, q in items])
            for (c, _), proposal in zip(items, proposals, strict=True):
                if proposal is not None:
                    drafts[c.seq_id] = proposal
                    modes[c.seq_id] = mode
        if not drafts:
            # Allowed, but the policy drafted nothing. With async scheduling the step waited
            # for its tokens for nothing, which counts against allowing drafts (that choice
            # would otherwise never be measured); without, it is a plain step like any other.
            return DraftPlan(gate=gate) if self.overlaps else NO_DRAFTS
        return DraftPlan(drafts, modes, gate)

    def _plan_ahead(self, round: DraftRound) -> DraftPlan:
        """The next step can go without drafts (and be scheduled before the current one's
        tokens are known) where no running request asks for them, or where the gate says
        drafting does not pay at this batch size now."""
        if not any(mode in self.proposers for mode in round.modes):
            return NO_DRAFTS
        if round.batch_size > self.config.max_batch_size:
            return NO_DRAFTS  # the policy drafts nothing at this batch size
        if self.gate.allow(round.batch_size):
            self._decided = True
            return DraftPlan(wait=True)
        return DraftPlan(gate=False)

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

    def observe(self, outcome: DraftOutcome) -> None:
        """Update acceptance estimates and the measured throughput with and without drafts;
        release state of the requests that ended."""
        plan = outcome.plan
        if plan.gate is not None and outcome.decode_only:
            self.gate.record(outcome.batch_size, plan.gate, outcome.num_tokens, outcome.seconds)
        for v in outcome.verified:
            group = _group(v.adapter_key, plan.modes[v.seq_id])
            self.policy.record(v.request_id, v.adapter_key, group, v.num_drafted, v.num_accepted)
        for request_id in outcome.finished:
            self.release(request_id)

    def release(self, request_id: str) -> None:
        self.policy.forget(request_id)
        for proposer in self.proposers.values():
            proposer.release(request_id)

    def _num_drafts(self, c: DraftCandidate, batch: int) -> int:
        if not c.eligible:
            return 0
        return self.policy.num_drafts(c.request_id, _group(c.adapter_key, c.mode), batch, c.room)


def _group(adapter_key: str | None, mode: SpeculationMode) -> str:
    """Requests whose acceptance is alike: the same adapter drafted by the same proposer."""
    return f"{adapter_key or 'base'}/{mode}"
