"""The model runner's batched sampling of a step: the rows that sample one token each,
gathered from the step's host logits into one SamplingBatch and one `sample` call.

The runner decides which rows come here (single-token rows; drafted and beam rows keep
their own paths), applies each row's penalties, logit bias and min_tokens mask
(processed_logits) and fetches its grammar bitmask; this module stacks them, samples, and
turns the result into each row's TokenLogprob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workers.batch_sampler import sample
from workers.protocol import TokenLogprob
from workers.sampling_batch import prepare, sampling_row
from workers.scheduler_output import ScheduledSeq


@dataclass(frozen=True)
class PendingRow:
    """A sequence sampling one token from row `row` of the step's logits. processed: the
    row after penalties, logit bias and min_tokens (None: the row as it is); bitmask: its
    grammar's allowed tokens, [ceil(vocab / 32)] int32 (None: unconstrained)."""

    seq: ScheduledSeq
    row: int
    processed: torch.Tensor | None = None
    bitmask: torch.Tensor | None = None


def sample_rows(
    rows: Sequence[PendingRow],
    logits: torch.Tensor,
    logprobs: torch.Tensor,
    generator: torch.Generator | None,
) -> list[TokenLogprob]:
    """Each row's token, its log-probability in `logprobs` (the model's own, [step rows,
    vocab]) and as many top alternatives as its request asked for. Rows without a
    generator of their own draw from `generator`, in order."""
    if not rows:
        return []
    index = [r.row for r in rows]
    in_order = index == list(range(logits.shape[0]))
    processed = any(r.processed is not None for r in rows)
    if in_order:
        work = logits.clone() if processed else logits
        raw = logprobs
    else:
        positions = torch.tensor(index, dtype=torch.long, device=logits.device)
        work = logits.index_select(0, positions)
        raw = logprobs.index_select(0, positions)
    for i, r in enumerate(rows):
        if r.processed is not None:
            work[i] = r.processed
    batch = prepare(
        [sampling_row(r.seq.sampling, r.seq.generator) for r in rows],
        logits.shape[-1],
        logits.device,
        generator,
    )
    out = sample(work, batch, raw, _bitmask(rows, logits.device))
    tokens = out.tokens.tolist()
    chosen = out.logprobs.tolist()
    top_ids = out.top_ids.tolist() if out.top_ids is not None else None
    top_values = out.top_logprobs.tolist() if out.top_logprobs is not None else None
    entries = []
    for i, r in enumerate(rows):
        count = r.seq.sampling.logprobs or 0
        top: tuple[tuple[int, float], ...] = ()
        if count and top_ids is not None and top_values is not None:
            top = tuple(zip(top_ids[i][:count], top_values[i][:count], strict=True))
        entries.append(TokenLogprob(tokens[i], chosen[i], top))
    return entries


def _bitmask(rows: Sequence[PendingRow], device: torch.device) -> torch.Tensor | None:
    """[rows, words] int32: each constrained row's mask, every bit set for the others."""
    masks = [r.bitmask for r in rows if r.bitmask is not None]
    if not masks:
        return None
    full = torch.full((len(rows), masks[0].shape[-1]), -1, dtype=torch.int32)
    for i, r in enumerate(rows):
        if r.bitmask is not None:
            full[i] = r.bitmask
    return full.to(device)
