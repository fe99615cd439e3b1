"""The beam rows of a step at once: each beam's log-probabilities after its penalties,
logit bias and min_tokens (for beams, as transformers does, the processors act on
log-probabilities), and its best beam_topk candidates, exactly as processed_logits and
top_logprobs give them row by row."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workers.batch_sampler import top_logprobs_of
from workers.logits_processing import apply_processing, prepare_processing
from workers.sampling_batch import top_logprob_groups
from workers.step_sampling import PendingSeq


def beam_candidates(
    seqs: Sequence[PendingSeq], logprobs: torch.Tensor
) -> list[tuple[tuple[int, float], ...]]:
    """Each beam's (token, log-probability) candidates, best first, from its row of the
    step's log-probabilities [step rows, vocab]."""
    if not seqs:
        return []
    device = logprobs.device
    index = torch.tensor([p.row for p in seqs], dtype=torch.long, device=device)
    rows = logprobs.index_select(0, index)
    histories = [p.history(0) for p in seqs]
    processing = prepare_processing(
        [None if h is None else (p.seq.sampling, h) for p, h in zip(seqs, histories, strict=True)],
        logprobs.shape[-1],
        device,
    )
    if processing is not None:
        rows = apply_processing(rows, processing)
    widths = [p.seq.beam_topk for p in seqs]
    ids, values = top_logprobs_of(rows, top_logprob_groups(widths, device))
    assert ids is not None and values is not None  # every beam row asks for candidates
    id_rows, value_rows = ids.tolist(), values.tolist()
    return [
        tuple(zip(id_rows[i][:k], value_rows[i][:k], strict=True)) for i, k in enumerate(widths)
    ]
