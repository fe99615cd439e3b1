"""Penalties, logit bias and min_tokens masking of a whole batch of rows at once: what
workers/sampler.py's processed_logits does to one row, bit for bit, for every row.

`prepare_processing` turns each row's settings and history (prompt and output ids, stop
ids, outputs so far) into flat scatter indices once per step; `apply_processing` then takes
a handful of vectorized ops over [rows, vocab], whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workers.host_copy import to_device
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
class RepetitionRows:
    """rows [m]: rows with a repetition penalty, penalty [m, 1] float64; seen: flat indices
    (position among those rows * vocab + token) of every prompt or output token."""

    rows: torch.Tensor
    penalty: torch.Tensor
    seen: torch.Tensor


@dataclass(frozen=True)
class FrequencyRows:
    """rows [m] with outputs and a frequency or presence penalty ([m, 1] float32 each);
    outputs: flat indices of their output tokens, once per occurrence."""

    rows: torch.Tensor
    frequency: torch.Tensor
    presence: torch.Tensor
    outputs: torch.Tensor


@dataclass(frozen=True)
class ProcessingBatch:
    """bias: flat indices (row * vocab + token) and float32 values, in each row's order;
    blocked: flat indices of the stop tokens min_tokens holds back."""

    vocab_size: int
    repetition: RepetitionRows | None
    frequency: FrequencyRows | None
    bias: tuple[torch.Tensor, torch.Tensor] | None
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
    if batch.repetition is not None:
        rep = batch.repetition
        x = out.index_select(0, rep.rows)
        seen = torch.zeros(x.numel(), dtype=torch.bool, device=x.device)
        seen = seen.index_fill(0, rep.seen, True).view_as(x)
        # In float64 and clamped, as processed_logits: no penalty overflows to inf.
        vals = x.double()
        penalized = torch.where(vals > 0, vals / rep.penalty, vals * rep.penalty)
        penalized = penalized.clamp(-_FP32_MAX, _FP32_MAX).to(x.dtype)
        out[rep.rows] = torch.where(seen, penalized, x)
    if batch.frequency is not None:
        freq = batch.frequency
        x = out.index_select(0, freq.rows)
        counts = torch.zeros(x.numel(), dtype=x.dtype, device=x.device)
        ones = torch.ones(freq.outputs.numel(), dtype=x.dtype, device=x.device)
        counts = counts.index_add(0, freq.outputs, ones).view_as(x)
        x -= freq.frequency * counts
        x -= freq.presence * (counts > 0).to(x.dtype)
        out[freq.rows] = x
    flat = out.view(-1)
    if batch.bias is not None:
        flat.index_add_(0, *batch.bias)
    if batch.blocked is not None:
        flat.index_fill_(0, batch.blocked, _NEG_INF)
    return out


def _flat(pairs: list[tuple[int, int]], vocab: int, device: torch.device) -> torch.Tensor:
    return to_device([row * vocab + token for row, token in pairs], device)


def _repetition(rows: Rows, vocab: int, device: torch.device) -> RepetitionRows | None:
    chosen = [(i, r) for i, r in enumerate(rows) if r and r[0].repetition_penalty != 1.0]
    if not chosen:
        return None
    seen = []
    for j, (_, (_, history)) in enumerate(chosen):
        seen += [(j, t) for t in sorted(set(history.prompt_ids) | set(history.output_ids))]
    penalty = torch.tensor([p.repetition_penalty for _, (p, _) in chosen], dtype=torch.float64)
    return RepetitionRows(
        to_device([i for i, _ in chosen], device),
        penalty.to(device)[:, None],
        _flat(seen, vocab, device),
    )


def _frequency(rows: Rows, vocab: int, device: torch.device) -> FrequencyRows | None:
    chosen = [
        (i, r)
        for i, r in enumerate(rows)
        if r and r[1].output_ids and (r[0].frequency_penalty or r[0].presence_penalty)
    ]
    if not chosen:
        return None
    outputs = [(j, t) for j, (_, (_, h)) in enumerate(chosen) for t in h.output_ids]

    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64).float().to(device)[:, None]

    return FrequencyRows(
        to_device([i for i, _ in chosen], device),
        column([p.frequency_penalty for _, (p, _) in chosen]),
        column([p.presence_penalty for _, (p, _) in chosen]),
        _flat(outputs, vocab, device),
    )


def _bias(rows: Rows, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    entries = [(i, t, b) for i, r in enumerate(rows) if r for t, b in r[0].logit_bias]
    if not entries:
        return None
    values = torch.tensor([b for _, _, b in entries], dtype=torch.float32).to(device)
    return _flat([(i, t) for i, t, _ in entries], vocab, device), values


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
