"""Re-running a step that raised, one request at a time, so the error ends only the
request whose own part raises."""

from __future__ import annotations

import logging
from typing import Protocol

from workers.request_failure import RequestFailure, failure_from_exception
from workers.running_decodes import NO_TOKEN
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq, SchedulerOutput

logger = logging.getLogger(__name__)


class StepRunner(Protocol):
    def copy_blocks(self, copies: tuple[tuple[int, int], ...]) -> None: ...

    def execute(self, step: SchedulerOutput) -> ModelRunnerOutput: ...


def run_isolated(runner: StepRunner, step: SchedulerOutput) -> ModelRunnerOutput:
    """The output of `step` (whose launch raised) from one forward per request.

    Safe to repeat: the block copies are redone first, and each forward rewrites every KV
    slot it writes; a sequence's attention reads only its own blocks, so the requests that
    do not fail get the tokens they would have had in the batch (up to float rounding of
    another batch shape). A request whose own forward raises fails alone.
    """
    logger.warning("a step of %d sequences failed; re-running it request by request", step.num_seqs)
    runner.copy_blocks(step.block_copies)
    by_request: dict[str, list[ScheduledSeq]] = {}
    for s in step.seqs:
        by_request.setdefault(s.request_id, []).append(s)
    decodes = step.decodes
    columns: dict[str, list[int]] = {}
    if decodes is not None:
        for j, request_id in enumerate(decodes.request_ids):
            columns.setdefault(request_id, []).append(j)
            by_request.setdefault(request_id, [])
    sampled: dict[int, tuple] = {}
    beams: dict[int, tuple] = {}
    failed: list[RequestFailure] = []
    prompt: dict[int, tuple] = {}
    decoded = [NO_TOKEN] * (len(decodes) if decodes is not None else 0)
    freed = step.freed_seq_ids  # rows to drop, with the first request's forward
    for request_id, seqs in by_request.items():
        try:
            own = columns.get(request_id)
            alone = decodes.select(own) if decodes is not None and own else None
            out = runner.execute(SchedulerOutput(tuple(seqs), freed_seq_ids=freed, decodes=alone))
            freed = ()
        except Exception as e:  # this request's own forward: it alone fails
            failed.append(failure_from_exception(request_id, "running its forward pass", e))
            continue
        sampled.update(out.sampled)
        beams.update(out.beam_topk)
        prompt.update(out.prompt_logprobs or {})
        for j, token_id in zip(own or (), out.decoded, strict=False):
            decoded[j] = token_id
        failed += out.failed
    return ModelRunnerOutput(sampled, beams, tuple(failed), prompt or None, tuple(decoded))
