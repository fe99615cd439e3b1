"""Apply a step's ModelRunnerOutput to one request: progress, new tokens, forks, beams, and
the TokenDeltas a caller sees. Helpers of Scheduler.update_from_output, which alone calls
them: nothing here touches the scheduler's queues."""

from __future__ import annotations

from typing import Protocol

from workers.beam_search import beam_step
from workers.kv_cache.manager import KVCacheManager
from workers.protocol import FinishReason, TokenDelta, TokenLogprob
from workers.running_decodes import NO_TOKEN
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq, SchedulerOutput
from workers.sequence import Request, Sequence, make_generator
from workers.stop_checker import finish_reason


def advance_in_flight(req: Request, by_id: dict[int, ScheduledSeq]) -> None:
    """Account for a launched step before its result is known, so the next one can be
    scheduled: its tokens count as computed, and each sampling sequence holds a PLACEHOLDER
    for its next token. Only for steps without drafts, forks or beams (one token per
    sampling sequence, whatever it turns out to be)."""
    for seq in req.seqs:
        scheduled = by_id.get(seq.seq_id)
        if scheduled is not None:
            seq.num_computed_tokens += scheduled.num_tokens
            if scheduled.sample:
                seq.add_pending()


def apply_output(
    kv: KVCacheManager,
    req: Request,
    by_id: dict[int, ScheduledSeq],
    result: ModelRunnerOutput,
    max_model_len: int,
    in_flight: bool = False,
) -> list[TokenDelta]:
    """Apply the step's output to one request (its sequences in by_id): progress, tokens,
    stops, forks, beams; the deltas its caller sees. Sequences that finish release their
    blocks; the request is finished when none is left. in_flight: the step went through
    advance_in_flight; its tokens replace placeholders."""
    max_len = max_model_len
    progressed = [(seq, by_id[seq.seq_id]) for seq in req.seqs if seq.seq_id in by_id]
    if not progressed:
        return []
    if result.prompt_logprobs:
        for seq, _ in progressed:
            req.prompt_logprobs += result.prompt_logprobs.get(seq.seq_id, ())
    for seq, scheduled in progressed:
        if in_flight:
            _resolve(kv, req, seq, result, max_len)
        else:
            _advance(kv, req, seq, scheduled.num_tokens, scheduled.spec_token_ids, result, max_len)
    deltas: list[TokenDelta] = []
    if req.beam is not None and all(s.seq_id in result.beam_topk for s in req.seqs):
        deltas += _advance_beams(kv, req, result, max_model_len)
    if req.needs_fork and req.seqs[0].num_computed_tokens >= req.prefill_target(req.seqs[0]):
        fork_samples(kv, req)
    return deltas + _collect(kv, req)


def apply_decode(
    kv: KVCacheManager,
    req: Request,
    seq: Sequence,
    token_id: int,
    max_model_len: int,
    in_flight: bool = False,
) -> TokenDelta | None:
    """apply_output for a request whose one sequence decoded one token, `token_id`, as a
    column of the step's RunningDecodes (no drafts, beams, forks, logprobs or prompt
    logprobs; NO_TOKEN: none): the same steps, inlined for the one token. Its delta, None
    if there is nothing new (then it did not finish)."""
    token_ids = seq.token_ids
    if in_flight:
        if token_id != NO_TOKEN:
            seq.resolve_pending(token_id)
            _stop(req, seq, token_id, max_model_len)
        computed = min(seq.num_computed_tokens, len(token_ids) - seq.num_pending)
        kv.cache_full_blocks(seq.seq_id, token_ids, computed, req.cache_key)
    else:
        seq.num_computed_tokens += 1
        if token_id != NO_TOKEN:
            token_ids.append(token_id)
            _stop(req, seq, token_id, max_model_len)
        kv.cache_full_blocks(seq.seq_id, token_ids, seq.num_computed_tokens, req.cache_key)
    reason = seq.finish_reason
    delta = _decode_delta(req, seq, reason)
    if reason is not None:
        kv.free(seq.seq_id)
        req.seqs.remove(seq)
    return delta


def _stop(req: Request, seq: Sequence, token_id: int, max_model_len: int) -> None:
    """_append without a logprob: whether the token just known ends the sequence."""
    known = len(seq.token_ids) - seq.num_pending
    reason = finish_reason(
        token_id,
        known - seq.num_prompt_tokens,
        known,
        req.spec.sampling,
        req.stop_ids,
        max_model_len,
    )
    seq.finish_reason = reason
    if reason is not None:
        seq.num_computed_tokens = min(seq.num_computed_tokens, known - 1)


def _decode_delta(req: Request, seq: Sequence, reason: FinishReason | None) -> TokenDelta | None:
    """take_delta for a plain decode (no logprobs, no prompt logprobs); None: nothing new
    and not finished."""
    token_ids = seq.token_ids
    known = len(token_ids) - seq.num_pending
    prompt = seq.num_prompt_tokens
    sent = seq.num_sent_tokens
    num_outputs = known - prompt
    if sent == num_outputs and reason is None:
        return None
    seq.num_sent_tokens = num_outputs
    first = prompt + sent
    return TokenDelta(
        req.spec.request_id,
        seq.index,
        (token_ids[first],) if first + 1 == known else tuple(token_ids[first:known]),
        None,
        reason,
        prompt,
        seq.num_cached_tokens,
        num_outputs,
        seq.num_drafted_tokens,
        seq.num_accepted_tokens,
    )


class _StepOwner(Protocol):
    def update_from_output(
        self, scheduler_output: SchedulerOutput, model_runner_output: ModelRunnerOutput
    ) -> list[TokenDelta]: ...


def apply_step(
    scheduler: _StepOwner,
    step: SchedulerOutput,
    result: ModelRunnerOutput,
    max_model_len: int | None = None,
) -> list[TokenDelta]:
    """The former name of Scheduler.update_from_output (which alone applies a step)."""
    return scheduler.update_from_output(step, result)


def fork_samples(kv: KVCacheManager, req: Request) -> None:
    """Turn the request's one sequence into n samples sharing its KV blocks."""
    root = req.seqs[0]
    for index in range(1, req.sampling.n):
        child = root.fork(index, make_generator(req.sampling.seed, index))
        kv.fork(root.seq_id, child.seq_id)
        req.seqs.append(child)
    req.forked = True


def _advance(
    kv: KVCacheManager,
    req: Request,
    seq: Sequence,
    num_tokens: int,
    drafts: tuple[int, ...],
    result: ModelRunnerOutput,
    max_model_len: int,
) -> None:
    """The step computed num_tokens of the sequence (`drafts` among them, to verify)."""
    tokens = result.sampled.get(seq.seq_id, ())
    # Drafts that were rejected leave their KV slots unused: roll back to what is real.
    num_accepted = max(len(tokens) - 1, 0)
    rejected = len(drafts) - num_accepted
    seq.num_computed_tokens += num_tokens - rejected
    for token in tokens:
        seq.token_ids.append(token.token_id)
        if _append(req, seq, token, max_model_len):  # a stop inside accepted drafts
            break
    if drafts:
        kv.trim(seq.seq_id, seq.num_computed_tokens)
        seq.num_drafted_tokens += len(drafts)
        seq.num_accepted_tokens += num_accepted
    kv.cache_full_blocks(seq.seq_id, seq.token_ids, seq.num_computed_tokens, req.cache_key)


def _resolve(
    kv: KVCacheManager, req: Request, seq: Sequence, result: ModelRunnerOutput, max_model_len: int
) -> None:
    """An in-flight step's token replaces the sequence's oldest placeholder (progress was
    counted at launch). A sequence that ends here is dropped with what later steps add."""
    for token in result.sampled.get(seq.seq_id, ()):
        seq.resolve_pending(token.token_id)
        _append(req, seq, token, max_model_len)
    # Blocks full of known tokens; the last one's keys may still be being written by a step
    # in flight, which runs before any step that could read them from the prefix cache.
    computed = min(seq.num_computed_tokens, seq.num_known_tokens)
    kv.cache_full_blocks(seq.seq_id, seq.token_ids, computed, req.cache_key)


def _append(req: Request, seq: Sequence, token: TokenLogprob, max_model_len: int) -> bool:
    """Record the token's logprob and whether it ends the sequence (then True)."""
    params = req.sampling
    if params.logprobs is not None:
        seq.logprobs.append(token)
    known = seq.num_known_tokens
    reason = finish_reason(
        token.token_id,
        known - seq.num_prompt_tokens,
        known,
        params,
        req.stop_ids,
        max_model_len,
    )
    seq.finish_reason = reason
    if reason is None:
        return False
    seq.num_computed_tokens = min(seq.num_computed_tokens, known - 1)
    return True


def _advance_beams(
    kv: KVCacheManager, req: Request, result: ModelRunnerOutput, max_model_len: int
) -> list[TokenDelta]:
    assert req.beam is not None
    beams = req.seqs
    generated, length = beams[0].num_output_tokens, beams[0].num_tokens
    params = req.sampling

    def ends(token_id: int) -> bool:
        return (
            token_id in req.stop_ids
            or generated + 1 >= params.max_tokens
            or length + 1 >= max_model_len
        )

    choices = beam_step(
        req.beam,
        [tuple(b.output_token_ids) for b in beams],
        [b.cum_logprob for b in beams],
        [result.beam_topk[b.seq_id] for b in beams],
        ends,
        generated,
        len(req.stop_ids),
    )
    next_beams = []
    if not req.beam.done:
        for index, choice in enumerate(choices):
            parent = beams[choice.parent]
            child = parent.fork(index, None)
            kv.fork(parent.seq_id, child.seq_id)
            child.token_ids.append(choice.token_id)
            child.cum_logprob = choice.cum_logprob
            next_beams.append(child)
    for beam in beams:
        kv.free(beam.seq_id)
    req.seqs = next_beams
    if not req.beam.done:
        return []
    return [
        TokenDelta(
            request_id=req.request_id,
            index=i,
            token_ids=hyp.output_token_ids,
            finish_reason=FinishReason.STOP
            if hyp.output_token_ids[-1] in req.stop_ids
            else FinishReason.LENGTH,
            num_prompt_tokens=beams[0].num_prompt_tokens,
            num_cached_tokens=beams[0].num_cached_tokens,
            num_generated_tokens=len(hyp.output_token_ids),
            prompt_logprobs=_prompt_logprobs(req),
        )
        for i, hyp in enumerate(req.beam.best(params.n))
    ]


def _collect(kv: KVCacheManager, req: Request) -> list[TokenDelta]:
    """Deltas for new tokens of sampled sequences; finished ones release their blocks."""
    if req.beam is not None:
        return []
    deltas = []
    for seq in list(req.seqs):
        if seq.num_sent_tokens == seq.num_output_tokens and not seq.finished:
            continue
        deltas.append(take_delta(req, seq, seq.finish_reason))
        if seq.finished:
            kv.free(seq.seq_id)
            req.seqs.remove(seq)
    return deltas


def _prompt_logprobs(req: Request) -> tuple[TokenLogprob, ...] | None:
    return None if req.sampling.prompt_logprobs is None else tuple(req.prompt_logprobs)


def take_delta(req: Request, seq: Sequence, reason: FinishReason | None) -> TokenDelta:
    """The sequence's outputs not sent yet (marked sent), as its caller sees them."""
    sent = seq.num_sent_tokens
    num_outputs = seq.num_output_tokens
    seq.num_sent_tokens = num_outputs
    return TokenDelta(
        request_id=req.request_id,
        index=seq.index,
        token_ids=seq.outputs_from(sent),
        logprobs=tuple(seq.logprobs[sent:]) if req.sampling.logprobs is not None else None,
        finish_reason=reason,
        num_prompt_tokens=seq.num_prompt_tokens,
        num_cached_tokens=seq.num_cached_tokens,
        num_generated_tokens=num_outputs,
        num_drafted_tokens=seq.num_drafted_tokens,
        num_accepted_tokens=seq.num_accepted_tokens,
        prompt_logprobs=_prompt_logprobs(req) if sent == 0 else None,
    )
