"""Iteration-level scheduling: which sequences compute how many tokens in the next step.

Every step gives each running sequence N new tokens (a prefill chunk, a recomputation after
preemption, or one decode token) under `max_num_batched_tokens`, running requests first in
priority order, then waiting ones. When blocks run out, the lowest-priority running request
is preempted: its blocks are freed and it is recomputed later.

The scheduler owns the step and is the one writer of its requests and their KV blocks:
schedule() (or schedule_ahead(), with async scheduling) plans a step, drafts included (the
speculator proposes them, the scheduler reserves their slots); update_from_output() applies
the step's output, finishes and frees requests, and tells the speculator what was accepted.
"""

from __future__ import annotations

import bisect
import heapq
import sys
import time
from dataclasses import replace

from adapters.admission import AdapterGate
from adapters.manager import LoRAManager
from workers.config import SchedulerConfig
from workers.kv_cache.manager import KVCacheManager
from workers.protocol import FinishReason, TokenDelta
from workers.request_failure import RequestFailure, failure_from_exception
from workers.running_decodes import DecodeColumns
from workers.scheduler_drafts import draft_candidates, draft_outcome, running_modes
from workers.scheduler_output import ModelRunnerOutput, NewSeq, ScheduledSeq, SchedulerOutput
from workers.sequence import Request, Sequence
from workers.spec.plan import DraftPlan, DraftPlanner, DraftRound
from workers.spec.proposers import Proposal
from workers.step_results import (
    advance_in_flight,
    apply_decode,
    apply_output,
    fork_samples,
    take_delta,
)


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        kv: KVCacheManager,
        adapters: LoRAManager | None = None,
        max_model_len: int | None = None,
        speculator: DraftPlanner | None = None,
        decode_columns: bool = False,
    ) -> None:
        """speculator: asked for drafts of the decodes each step schedules; None: no
        speculative decoding. decode_columns: send running plain greedy decodes as columns
        (SchedulerOutput.decodes) rather than one ScheduledSeq each (not with a speculator,
        which drafts for ScheduledSeqs)."""
        self.config = config
        self.decode_columns = decode_columns and speculator is None
        # a sequence of this many tokens is done
        self.max_model_len = sys.maxsize if max_model_len is None else max_model_len
        self.kv = kv
        self.adapters = adapters
        self.speculator = speculator
        self.waiting: list[tuple[tuple[int, float, int], Request]] = []
        self.running: list[Request] = []
        self.num_preemptions = 0
        # Requests whose scheduling raised: removed, blocks freed; reported with the next
        # step's output.
        self.failures: list[RequestFailure] = []
        # The step whose tokens were counted at launch (scheduling ahead of it).
        self._counted: SchedulerOutput | None = None
        self._step_finished = False

    # -- queues -----------------------------------------------------------------------------

    def add(self, req: Request) -> None:
        """Queue a new request. One whose prompt is a single token forks its samples now:
        there is nothing for them to share."""
        if req.needs_fork and len(req.spec.prompt_token_ids) == 1:
            fork_samples(self.kv, req)
        self._queue(req)

    def _queue(self, req: Request) -> None:
        heapq.heappush(self.waiting, (req.sort_key, req))

    def abort(self, request_id: str) -> list[TokenDelta]:
        """Cancel a request (its blocks return to the pool at once): an ABORT delta per
        sequence, none if the request is unknown."""
        req = self.remove(request_id)
        if req is None:
            return []
        return [take_delta(req, seq, FinishReason.ABORT) for seq in req.seqs]

    def remove(self, request_id: str) -> Request | None:
        """Take a request out of the queues and free its blocks (and the speculator's state
        of it)."""
        req = self._take(request_id)
        if req is not None:
            self._free_all(req)
            self._release(req)
            if self.speculator is not None:
                self.speculator.release(request_id)
        return req

    def _take(self, request_id: str) -> Request | None:
        for i, req in enumerate(self.running):
            if req.request_id == request_id:
                del self.running[i]
                return req
        for i, (_, req) in enumerate(self.waiting):
            if req.request_id == request_id:
                self.waiting.pop(i)
                heapq.heapify(self.waiting)
                return req
        return None

    def _finish(self, req: Request) -> None:
        self.running.remove(req)
        self._release(req)

    def _release(self, req: Request) -> None:
        if req.adapter_key is not None and self.adapters is not None:
            self.adapters.release(req.adapter_key)

    def requests(self) -> list[Request]:
        """Every request not finished: running ones, then waiting ones (in no order)."""
        return self.running + [req for _, req in self.waiting]

    def live_request_ids(self) -> set[str]:
        return {req.request_id for req in self.requests()}

    def live_seq_ids(self) -> set[int]:
        return {seq.seq_id for req in self.requests() for seq in req.seqs}

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_running_seqs(self) -> int:
        return sum(len(r.seqs) for r in self.running)

    @property
    def step_finished(self) -> bool:
        """Whether the deltas of the last update_from_output finish any sequence."""
        return self._step_finished

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # -- one step ---------------------------------------------------------------------------

    def schedule(self, preempt: bool = True) -> SchedulerOutput:
        """The next step, with drafts where the speculator proposes them (their KV slots
        reserved here). preempt=False (scheduling ahead of a step in flight, whose sequences
        hold tokens not known yet: see schedule_ahead) never preempts, where blocks run out
        the step ends there and admits nothing, and it never drafts."""
        step = self._schedule(preempt)
        if preempt and self.speculator is not None:
            step = self._with_drafts(step, self.speculator)
        self.kv.changes.sent(s.seq_id for s in step.seqs)
        if step.decodes is not None and step.decodes.blocks:
            self.kv.changes.sent(seq_id for seq_id, _ in step.decodes.blocks)
        return step

    def schedule_ahead(self, in_flight: SchedulerOutput) -> SchedulerOutput | None:
        """The step after `in_flight` (launched, its output not back yet), scheduled now so
        that it can be queued on the device behind it (async scheduling); None when it
        must wait for that output: `in_flight` samples in a way the host must see first,
        or drafting would pay for the next step. Its tokens count as computed from now on,
        each sampling sequence holding a placeholder for its token until
        update_from_output(in_flight) knows it. A step ahead that is never launched is
        handed to discard()."""
        if not in_flight.overlappable:
            return None
        plan: DraftPlan | None = None
        if self.speculator is not None:
            modes = running_modes(self.running)
            ahead = DraftRound(self.num_running_seqs, tokens_known=False, modes=modes)
            plan = self.speculator.plan(ahead)
            if plan.wait:
                return None
        self._count_in_flight(in_flight)
        step = self.schedule(preempt=False)
        if plan is not None and plan.gate is not None:
            step = replace(step, speculation=plan)
        return step

    def discard(self, step: SchedulerOutput) -> None:
        """A scheduled step that never ran: its block copies are put back (they go first),
        and the differences it carried for the runner are sent again with the next step;
        its allocations stay, and the next schedule() plans the same work again."""
        self.kv.requeue_copies(step.block_copies)
        updates = [(s.seq_id, s.blocks, s.new is not None) for s in step.seqs if s.blocks]
        if step.decodes is not None:
            updates += [(seq_id, update, False) for seq_id, update in step.decodes.blocks]
        self.kv.changes.unsend(updates, step.freed_seq_ids)

    def _schedule(self, preempt: bool) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        scheduled: list[ScheduledSeq] = []
        preempted_before = self.num_preemptions
        out_of_blocks = False
        decodes = DecodeColumns() if self.decode_columns else None
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            try:
                seq = self._plain_decode(req) if decodes is not None else None
                planned: list[ScheduledSeq] | None
                if seq is not None:
                    assert decodes is not None
                    decoded = self._schedule_decode(req, seq, decodes, preempt)
                    planned = None if decoded is None else []
                    budget -= bool(decoded)
                else:
                    planned = self._schedule_running(req, budget, preempt)
            except Exception as e:  # this request alone fails; it is out of running now
                self._fail(req, e)
                continue
            if planned is None:
                out_of_blocks = not preempt
                if out_of_blocks:
                    break
                continue  # req preempted itself: it is no longer in running
            for s in planned:
                scheduled.append(s)
                budget -= s.num_tokens
            i += 1
        if self.num_preemptions == preempted_before and not out_of_blocks:
            scheduled += self._admit_waiting(budget)
        return SchedulerOutput(
            seqs=tuple(scheduled),
            block_copies=self.kv.take_pending_copies(),
            freed_seq_ids=self.kv.changes.take_freed(),
            num_preempted=self.num_preemptions - preempted_before,
            num_running_seqs=self.num_running_seqs,
            decodes=decodes.build() if decodes is not None else None,
        )

    def _with_drafts(self, step: SchedulerOutput, speculator: DraftPlanner) -> SchedulerOutput:
        """The step with the drafts the speculator proposes for its decodes, each in slots
        reserved after the sequence's token (a sequence without room decodes plainly)."""
        round = DraftRound(
            batch_size=step.num_running_seqs,
            candidates=draft_candidates(self.running, step, self.max_model_len),
            budget=self.config.max_num_batched_tokens - step.num_tokens,
            decode_only=all(s.num_tokens == 1 for s in step.seqs),
        )
        plan = speculator.plan(round)
        if not plan.drafts:
            return step if plan.gate is None else replace(step, speculation=plan)
        seqs = tuple(self._reserve_drafts(s, plan.drafts.get(s.seq_id)) for s in step.seqs)
        copies = step.block_copies + self.kv.take_pending_copies()
        return replace(step, seqs=seqs, block_copies=copies, speculation=plan)

    def _reserve_drafts(self, s: ScheduledSeq, proposal: Proposal | None) -> ScheduledSeq:
        if proposal is None:
            return s
        tokens = proposal.token_ids
        if self.kv.allocate_slots(s.seq_id, s.start_pos + 1, len(tokens)) is None:
            return s  # no room for the drafts: decode plainly this step
        return replace(
            s,
            token_ids=s.token_ids + tokens,
            spec_token_ids=tokens,
            spec_probs=proposal.probs,
            block_table=self.kv.table_snapshot(s.seq_id),
            blocks=self.kv.changes.update(s.seq_id, self.kv.block_tables[s.seq_id]),
        )

    def _plain_decode(self, req: Request) -> Sequence | None:
        """The request's one sequence if it decodes one token by bare argmax this step, as a
        column of the step's RunningDecodes (the runner holds it already)."""
        seqs = req.seqs
        if not req.decodes_plainly or len(seqs) != 1:
            return None
        seq = seqs[0]
        num_tokens = len(seq.token_ids)
        if (
            seq.num_computed_tokens != num_tokens - 1
            or num_tokens - seq.num_pending - seq.num_prompt_tokens < req.spec.sampling.min_tokens
            or self.kv.changes.is_new(seq.seq_id)
        ):
            return None
        return seq

    def _schedule_decode(
        self, req: Request, seq: Sequence, decodes: DecodeColumns, preempt: bool
    ) -> bool | None:
        """_schedule_running for a plain decode: True if it decodes this step, False if its
        token in flight is its last, None if out of blocks (as there)."""
        num_tokens = len(seq.token_ids)
        if seq.num_pending and (
            num_tokens - seq.num_prompt_tokens >= req.spec.sampling.max_tokens
            or num_tokens >= self.max_model_len
        ):
            return False
        seq_id = seq.seq_id
        position = seq.num_computed_tokens
        kv = self.kv
        while not kv.decode_slot(seq_id, position):
            if not preempt:
                return None
            victim = self.running[-1]
            self._preempt(victim)
            if victim is req:
                return None
        update = kv.changes.held_update(seq_id, kv.block_tables[seq_id])
        decodes.add(
            seq_id, req.spec.request_id, seq.token_ids[position], position, req.adapter_key, update
        )
        return True

    def _schedule_running(
        self, req: Request, budget: int, preempt: bool
    ) -> list[ScheduledSeq] | None:
        plan = self._plan(req, budget)
        planned: list[ScheduledSeq] = []
        for seq, num_new in plan:
            while self.kv.allocate_slots(seq.seq_id, seq.num_computed_tokens, num_new) is None:
                if not preempt:
                    return None
                victim = self.running[-1]
                self._preempt(victim)
                if victim is req:
                    return None
            planned.append(self._scheduled(req, seq, num_new))
        return planned

    def _admit_waiting(self, budget: int) -> list[ScheduledSeq]:
        """Start waiting requests in priority order while blocks, budget, sequence slots
        and adapter slots allow."""
        scheduled: list[ScheduledSeq] = []
        gate = AdapterGate(self.adapters, {r.adapter_key for r in self.running if r.adapter_key})
        admitted: list[Request] = []
        num_seqs = self.num_running_seqs  # counted once: a step may admit many requests
        for _, req in sorted(self.waiting, key=lambda item: item[0]):
            if budget <= 0:
                break
            if num_seqs + req.width > self.config.max_num_seqs and (self.running or admitted):
                break
            if not gate.allows(req.adapter_key):
                continue
            try:
                planned = self._allocate_new(req, budget)
            except Exception as e:  # this request alone fails
                self._fail(req, e)
                continue
            if planned is None:
                break
            gate.admitted(req.adapter_key)
            admitted.append(req)
            num_seqs += req.width
            scheduled += planned
            budget -= sum(s.num_tokens for s in planned)
        if admitted:
            self.waiting = [item for item in self.waiting if item[1] not in admitted]
            heapq.heapify(self.waiting)
            for req in admitted:  # running stays in priority order (preemption takes the last)
                bisect.insort(self.running, req, key=_sort_key)
        return scheduled

    def _allocate_new(self, req: Request, budget: int) -> list[ScheduledSeq] | None:
        """Blocks for a waiting request's sequences (prefix-cache hits first), all or none.
        Sequences past the token budget keep just their cached prefix until a later step."""
        planned: list[ScheduledSeq] = []
        for seq in req.seqs:
            target = req.prefill_target(seq)
            # Prompt logprobs come from the prefill's own logits: compute every position.
            hits = (
                []
                if req.sampling.prompt_logprobs is not None
                else self.kv.find_cached_prefix(seq.token_ids[:target], req.cache_key)
            )
            num_cached = len(hits) * self.kv.block_size
            num_new = min(target - num_cached, budget)
            if self.kv.allocate_slots(seq.seq_id, num_cached, num_new, hits) is None:
                for s in req.seqs:
                    self.kv.free(s.seq_id)
                    s.num_computed_tokens = 0
                return None
            seq.num_computed_tokens = num_cached
            if seq.num_output_tokens == 0:
                seq.num_cached_tokens = num_cached
            if num_new > 0:
                planned.append(self._scheduled(req, seq, num_new))
                budget -= num_new
        return planned

    def _plan(self, req: Request, budget: int) -> list[tuple[Sequence, int]]:
        """(sequence, new tokens) for a running request; beams move together or not at all."""
        plan = []
        max_tokens = req.sampling.max_tokens
        max_len = self.max_model_len
        for seq in req.seqs:
            num_tokens = seq.num_tokens
            if seq.num_pending and (
                num_tokens - seq.num_prompt_tokens >= max_tokens or num_tokens >= max_len
            ):
                continue  # its token in flight is its last
            num_new = min(req.prefill_target(seq) - seq.num_computed_tokens, budget)
            if num_new > 0:
                plan.append((seq, num_new))
                budget -= num_new
        if req.sampling.use_beam_search and len(plan) < len(req.seqs):
            return []
        return plan

    def _scheduled(self, req: Request, seq: Sequence, num_new: int) -> ScheduledSeq:
        """One sequence's share of the step (built for every sequence every step: kept lean)."""
        start = seq.num_computed_tokens
        end = start + num_new
        token_ids = seq.token_ids
        params = req.sampling
        seq_id = seq.seq_id
        changes = self.kv.changes
        table = self.kv.block_tables[seq_id]
        new = None
        if changes.is_new(seq_id):  # the runner gets its tokens once
            new = NewSeq(tuple(token_ids[: seq.num_known_tokens]), seq.num_prompt_tokens)
        row_start = num_rows = 0
        if params.prompt_logprobs is not None:
            row_start, num_rows = req.prompt_logprob_rows(start, end)
        return ScheduledSeq(
            seq_id=seq_id,
            request_id=req.request_id,
            token_ids=tuple(token_ids[start:end]),
            start_pos=start,
            block_table=changes.snapshot(seq_id, table),
            sample=end == seq.num_tokens and not req.needs_fork,
            sampling=params,
            generator=seq.generator,
            blocks=changes.update(seq_id, table),
            new=new,
            num_output_tokens=seq.num_output_tokens,
            beam_topk=req.beam_topk if params.use_beam_search else 0,
            adapter_key=req.adapter_key,
            prompt_row_start=row_start,
            num_prompt_rows=num_rows,
            prompt_next_ids=tuple(token_ids[row_start + 1 : row_start + 1 + num_rows])
            if num_rows
            else (),
            prompt_top=params.prompt_logprobs or 0,
        )

    # -- a step's output ----------------------------------------------------------------------

    def _count_in_flight(self, step: SchedulerOutput) -> None:
        """Count a launched step's tokens before its output is known, so that the next step
        can be scheduled (async scheduling): each sampling sequence holds a placeholder for
        its next token until update_from_output replaces it."""
        by_id = {s.seq_id: s for s in step.seqs}
        columns = step.decodes.index if step.decodes is not None else {}
        for req in self.running:
            seqs = req.seqs
            if columns and len(seqs) == 1 and seqs[0].seq_id in columns:
                seqs[0].num_computed_tokens += 1
                seqs[0].add_pending()
            else:
                advance_in_flight(req, by_id)
        self._counted = step

    def update_from_output(
        self,
        scheduler_output: SchedulerOutput,
        model_runner_output: ModelRunnerOutput,
        started: float | None = None,
    ) -> list[TokenDelta]:
        """Apply a launched step's output, the one writer of the requests' progress: failed
        requests end with an ERROR delta, the others append their accepted tokens, apply
        stops, fork or advance their beams; finished requests leave running and free their
        blocks. The speculator then observes how its drafts fared (`started`: when the
        caller began this step, time.perf_counter(), for the throughput it measures).
        Returns the deltas of the step, per request and sample (step_finished: whether any
        of them finishes its sequence)."""
        step, result = scheduler_output, model_runner_output
        deltas = self._fail_requests(self.take_failures() + list(result.failed))
        finished = bool(deltas)  # ERROR deltas
        in_flight = self._counted is step
        if in_flight:
            self._counted = None
        by_id = {s.seq_id: s for s in step.seqs}
        columns = step.decodes.index if step.decodes is not None else {}
        decoded = result.decoded
        max_len = self.max_model_len
        kv = self.kv
        for req in list(self.running):
            seqs = req.seqs
            column = columns.get(seqs[0].seq_id) if columns and len(seqs) == 1 else None
            if column is not None:
                delta = apply_decode(kv, req, seqs[0], decoded[column], max_len, in_flight)
                if delta is None:
                    continue
                deltas.append(delta)
                if delta.finish_reason is None:
                    continue
                finished = True  # its one sequence: the request
            else:
                own = apply_output(kv, req, by_id, result, max_len, in_flight)
                finished = finished or any(d.finish_reason is not None for d in own)
                deltas += own
            if req.finished:
                self._finish(req)
        self._step_finished = finished
        if self.speculator is not None:
            seconds = 0.0 if started is None else time.perf_counter() - started
            self.speculator.observe(draft_outcome(step, result, deltas, self.running, seconds))
        return deltas

    def _fail_requests(self, failures: list[RequestFailure]) -> list[TokenDelta]:
        """End each failed request with an ERROR delta; its blocks return to the pool."""
        deltas = []
        for failure in failures:
            self.remove(failure.request_id)  # no-op if scheduling failed it
            deltas.append(
                TokenDelta(
                    failure.request_id,
                    0,
                    (),
                    finish_reason=FinishReason.ERROR,
                    error=failure.message,
                )
            )
        return deltas

    # -- preemption -------------------------------------------------------------------------

    def _preempt(self, req: Request) -> None:
        """Free the request's blocks and queue it again; it recomputes what it had.

        Beam search restarts from its prompt: it is deterministic, so the result is the same.
        """
        self.running.remove(req)
        self._free_all(req)
        if req.sampling.use_beam_search:
            req.reset_beams()
        for seq in req.seqs:
            seq.num_computed_tokens = 0
        self.num_preemptions += 1
        self._queue(req)

    def _fail(self, req: Request, error: Exception) -> None:
        self.remove(req.request_id)
        self.failures.append(failure_from_exception(req.request_id, "being scheduled", error))

    def take_failures(self) -> list[RequestFailure]:
        failures, self.failures = self.failures, []
        return failures

    def _free_all(self, req: Request) -> None:
        for seq in req.seqs:
            self.kv.free(seq.seq_id)


def _sort_key(req: Request) -> tuple[int, float, int]:
    return req.sort_key
