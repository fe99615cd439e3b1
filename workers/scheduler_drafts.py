"""What the scheduler tells the speculator about a step: read-only views of its requests
(the candidates of a DraftRound, the DraftOutcome of an output). Nothing here writes."""

from __future__ import annotations

from workers.protocol import SpeculationMode, TokenDelta
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq, SchedulerOutput
from workers.sequence import Request, Sequence
from workers.spec.plan import NO_DRAFTS, DraftCandidate, DraftOutcome, Verified


def draft_candidates(
    running: list[Request], step: SchedulerOutput, max_model_len: int
) -> tuple[DraftCandidate, ...]:
    """The step's sequences of requests that ask for speculation, in step order."""
    owners = {
        seq.seq_id: (req, seq)
        for req in running
        if req.spec.speculation is not SpeculationMode.NONE
        for seq in req.seqs
    }
    if not owners:
        return ()
    return tuple(
        _candidate(s, *owners[s.seq_id], max_model_len) for s in step.seqs if s.seq_id in owners
    )


def _candidate(s: ScheduledSeq, req: Request, seq: Sequence, max_model_len: int) -> DraftCandidate:
    params = req.sampling
    eligible = s.sample and s.num_tokens == 1 and params.n == 1 and not params.use_beam_search
    room = min(params.max_tokens - seq.num_output_tokens, max_model_len - seq.num_tokens) - 1
    return DraftCandidate(
        seq_id=s.seq_id,
        request_id=req.request_id,
        mode=req.spec.speculation,
        adapter_key=req.adapter_key,
        eligible=eligible,
        room=room,
        token_ids=seq.token_ids,
        num_prompt_tokens=seq.num_prompt_tokens,
        sampling=params,
        stop_ids=req.stop_ids,
    )


def running_modes(running: list[Request]) -> frozenset[SpeculationMode]:
    return frozenset(req.spec.speculation for req in running)


def draft_outcome(
    step: SchedulerOutput,
    result: ModelRunnerOutput,
    deltas: list[TokenDelta],
    running: list[Request],
    seconds: float,
) -> DraftOutcome:
    """What the step's output teaches the speculator: accepted drafts per drafted
    sequence (a failed request's count as rejected), the requests of the step that are no
    longer running, and the tokens the step gave requests."""
    live = {req.request_id for req in running}
    verified = tuple(
        Verified(
            s.seq_id,
            s.request_id,
            s.adapter_key,
            len(s.spec_token_ids),
            max(len(result.sampled.get(s.seq_id, ())) - 1, 0),
        )
        for s in step.seqs
        if s.spec_token_ids
    )
    return DraftOutcome(
        plan=step.speculation or NO_DRAFTS,
        batch_size=step.num_running_seqs,
        decode_only=all(s.num_tokens - len(s.spec_token_ids) == 1 for s in step.seqs),
        verified=verified,
        finished=frozenset(s.request_id for s in step.seqs) - live,
        num_tokens=sum(len(delta.token_ids) for delta in deltas),
        seconds=seconds,
    )
