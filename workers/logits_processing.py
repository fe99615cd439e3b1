"""Penalties, logit bias and min_tokens masking of a whole batch of rows at once: what
workers/sampler.py's processed_logits does to one row, bit for bit, for every row.

`prepare_processing` turns each row's settings and history (prompt and output ids, stop
ids, outputs so far) into flat indices of the entries each op touches, once per step;
`apply_processing` then takes one gather and scatter per op for the whole batch, whatever
the number of rows, and never a pass over the whole [rows, vocab].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from workers.host_copy import array_to_device, to_device
from workers.sampling_params import SamplingParams

_NEG_INF = float("-inf")
_FP32_MAX = torch.finfo(torch.float32).max


@dataclass(frozen=True)
class TokenHistory:
    """What processed_logits reads besides the row: `output_ids` only for penalties,
    num_outputs for min_tokens (stop ids are held back while it is below min_tokens)."""

    prompt_ids: tuple[int, ...] = ()
    output_ids: tuple[int, ...] = ()
    stop_ids: tuple[int, ...] = ()
    num_outputs: int = 0


Row = tuple[SamplingParams, TokenHistory]
Rows = Sequence[Row | None]  # None: a row that needs nothing (or came processed)


@dataclass(frozen=True)
class Entries:
    """Some entries of the logits: flat indices (row * vocab + token) and one value each."""

    index: torch.Tensor  # long [k]
    values: torch.Tensor  # [k]


@dataclass(frozen=True)
class ProcessingBatch:
    """Every op touches only its own entries, as processed_logits does per row.
    repetition: each row's prompt and output tokens (once) and its penalty (float64);
    frequency: each row's output tokens (once), the frequency penalty times their count and
    the presence penalty (float32 each); bias: (token, bias) entries in each row's order;
    blocked: the stop tokens min_tokens holds back."""

    vocab_size: int
    repetition: Entries | None
    frequency: tuple[Entries, torch.Tensor] | None
    bias: Entries | None
    blocked: torch.Tensor | None


def prepare_processing(rows: Rows, vocab_size: int, device: torch.device) -> ProcessingBatch | None:
    """The batch for logits [len(rows), vocab_size] on `device`; None when no row needs
    any processing. A row given as None is left as it is."""
    batch = ProcessingBatch(
        vocab_size,
        _repetition(rows, vocab_size, device),
        _frequency(rows, vocab_size, device),
        _bias(rows, vocab_size, device),
        _blocked(rows, vocab_size, device),
    )
    if batch.repetition is batch.frequency is batch.bias is batch.blocked is None:
        return None
    return batch


def apply_processing(logits: torch.Tensor, batch: ProcessingBatch) -> torch.Tensor:
    """processed_logits of every row of logits [rows, vocab] (a new tensor)."""
    out = logits.clone()
    flat = out.view(-1)
    if batch.repetition is not None:
        index, penalty = batch.repetition.index, batch.repetition.values
        # In float64 and clamped, as processed_logits: no penalty overflows to inf.
        vals = flat[index].double()
        penalized = torch.where(vals > 0, vals / penalty, vals * penalty)
        flat[index] = penalized.clamp(-_FP32_MAX, _FP32_MAX).to(flat.dtype)
    if batch.frequency is not None:
        # processed_logits subtracts frequency * count, then presence * (count > 0), from
        # the whole row; where the count is 0 both are 0 and the logit stays as it is.
        times_count, presence = batch.frequency
        vals = flat[times_count.index] - times_count.values
        flat[times_count.index] = vals - presence
    if batch.bias is not None:
        flat.index_add_(0, batch.bias.index, batch.bias.values)
    if batch.blocked is not None:
        flat.index_fill_(0, batch.blocked, _NEG_INF)
    return out


def _flat(pairs: list[tuple[int, int]], vocab: int, device: torch.device) -> torch.Tensor:
    return to_device([row * vocab + token for row, token in pairs], device)


def _values(values: list[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Through float64: float32 rounds each value as the per-row scalar arithmetic does.
    return torch.tensor(values, dtype=torch.float64).to(dtype).to(device)


def _repetition(rows: Rows, vocab: int, device: torch.device) -> Entries | None:
    picked = [
        (i, r) for i, r in enumerate(rows) if r is not None and r[0].repetition_penalty != 1.0
    ]
    if not picked:
        return None
    # Each row's prompt and output tokens, once each (an id's row * vocab + id, sorted).
    seen, _ = _distinct(
        [i for i, _ in picked], [(h.prompt_ids, h.output_ids) for _, (_, h) in picked], vocab
    )
    if not len(seen):
        return None
    penalty = _per_row(picked, seen // vocab, len(rows), lambda p: p.repetition_penalty)
    return Entries(array_to_device(seen, device), _float(penalty, torch.float64, device))


def _frequency(rows: Rows, vocab: int, device: torch.device) -> tuple[Entries, torch.Tensor] | None:
    picked = [
        (i, r)
        for i, r in enumerate(rows)
        if r is not None and r[1].output_ids and (r[0].frequency_penalty or r[0].presence_penalty)
    ]
    if not picked:
        return None
    tokens, counts = _distinct(
        [i for i, _ in picked], [(h.output_ids,) for _, (_, h) in picked], vocab
    )
    row = tokens // vocab
    frequency = _per_row(picked, row, len(rows), lambda p: p.frequency_penalty)
    presence = _per_row(picked, row, len(rows), lambda p: p.presence_penalty)
    # frequency * count in float32, as `frequency_penalty * counts` over the row computes it
    times = _float(frequency, torch.float32, device) * _float(
        counts.astype(np.float64), torch.float32, device
    )
    return Entries(array_to_device(tokens, device), times), _float(presence, torch.float32, device)


def _distinct(
    row_ids: list[int], parts: list[tuple[Sequence[int], ...]], vocab: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct row * vocab + token of each row's ids (the concatenation of its parts),
    sorted, and how often each occurs."""
    lengths = [sum(len(part) for part in ids) for ids in parts]
    ids = np.fromiter(
        chain.from_iterable(chain.from_iterable(parts)), dtype=np.int64, count=sum(lengths)
    )
    flat = np.sort(np.repeat(np.array(row_ids, dtype=np.int64) * vocab, lengths) + ids)
    first = np.ones(len(flat), dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return flat[starts], np.diff(np.append(starts, len(flat)))


def _per_row(
    picked: list[tuple[int, Row]],
    row: np.ndarray,
    num_rows: int,
    value: Callable[[SamplingParams], float],
) -> np.ndarray:
    """float64 [entries]: each entry's row's setting."""
    by_row = np.zeros(num_rows, dtype=np.float64)
    by_row[[i for i, _ in picked]] = [value(params) for _, (params, _) in picked]
    return by_row[row]


def _float(values: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # From float64: float32 rounds each value as the per-row scalar arithmetic does.
    return torch.from_numpy(values).to(dtype).to(device)


def _bias(rows: Rows, vocab: int, device: torch.device) -> Entries | None:
    entries = [(i, t, b) for i, r in enumerate(rows) if r for t, b in r[0].logit_bias]
    if not entries:
        return None
    values = _values([b for _, _, b in entries], torch.float32, device)
    return Entries(_flat([(i, t) for i, t, _ in entries], vocab, device), values)


def _blocked(rows: Rows, vocab: int, device: torch.device) -> torch.Tensor | None:
    """Stop tokens of rows below min_tokens, unless they are the whole vocabulary (then
    nothing would be left to draw: the row stays as it is, as in mask_tokens)."""
    pairs = []
    for i, r in enumerate(rows):
        if r is None:
            continue
        p, h = r
        stops = set(h.stop_ids)
        if h.num_outputs < p.min_tokens and stops and len(stops) < vocab:
            pairs += [(i, t) for t in sorted(stops)]
    return _flat(pairs, vocab, device) if pairs else None
