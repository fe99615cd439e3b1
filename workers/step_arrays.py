"""A step's inputs gathered from the persistent batch as host arrays, with whole-array
numpy operations (no per-token Python): flat rows for the eager forward, and rows padded to
a captured shape for the CUDA graphs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np

from workers.input_batch import InputBatch
from workers.scheduler_output import ScheduledSeq


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + length) for each pair."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total, dtype=np.int64)


def _ints(values: Iterable[int], count: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=count)


@dataclass(frozen=True)
class StepArrays:
    """The tokens of a step, sequence after sequence: ids, positions, the cache slot each
    writes; per sequence its query offsets (num_seqs + 1), context lengths and block
    tables (padded with 0); the rows whose logits are kept."""

    input_ids: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    query_start_loc: np.ndarray
    seq_lens: np.ndarray
    block_tables: np.ndarray
    logits_indices: np.ndarray


def gather(batch: InputBatch, seqs: tuple[ScheduledSeq, ...], block_size: int) -> StepArrays:
    """The step's flat inputs (the batch holds every sequence's table)."""
    n = len(seqs)
    rows = batch.rows(seqs)
    counts = _ints((s.num_tokens for s in seqs), n)
    starts = _ints((s.start_pos for s in seqs), n)
    query_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=query_start[1:])
    total = int(query_start[-1])
    input_ids = _ints(chain.from_iterable(s.token_ids for s in seqs), total)
    positions = ranges(starts, counts)
    blocks = batch.tables[np.repeat(rows, counts), positions // block_size]
    width = int(batch.num_blocks[rows].max())
    return StepArrays(
        input_ids=input_ids,
        positions=positions,
        slots=blocks * block_size + positions % block_size,
        query_start_loc=query_start,
        seq_lens=starts + counts,
        block_tables=batch.tables[rows, :width],
        logits_indices=_logits_indices(seqs, query_start),
    )


def _logits_indices(seqs: tuple[ScheduledSeq, ...], query_start: np.ndarray) -> np.ndarray:
    """Each sequence's prompt rows (prompt logprobs), then its sample rows."""
    n = len(seqs)
    ends = query_start[1:]
    sample_rows = _ints((s.num_sample_rows for s in seqs), n)
    if not any(s.num_prompt_rows for s in seqs):
        return ranges(ends - sample_rows, sample_rows)
    prompt_rows = _ints((s.num_prompt_rows for s in seqs), n)
    offsets = _ints((s.prompt_row_start - s.start_pos for s in seqs), n)
    starts = np.stack((query_start[:-1] + offsets, ends - sample_rows), axis=1).ravel()
    return ranges(starts, np.stack((prompt_rows, sample_rows), axis=1).ravel())


@dataclass(frozen=True)
class GraphRows:
    """A step as `width` rows per sequence, padded at the front: the padding rows sit at
    the positions just before the sequence's first token (clamped at 0), carry token 0
    and write to the scratch slot. Per row: ids, positions, slots, adapter slot; per
    sequence: context length and block table; `keep`: the rows whose logits are sampled."""

    input_ids: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    adapter_slots: np.ndarray
    seq_lens: np.ndarray
    block_tables: np.ndarray
    keep: np.ndarray


def graph_rows(
    batch: InputBatch,
    seqs: tuple[ScheduledSeq, ...],
    width: int,
    block_size: int,
    scratch_slot: int,
    adapter_slots: list[int] | None = None,
) -> GraphRows:
    n = len(seqs)
    rows = batch.rows(seqs)
    counts = _ints((s.num_tokens for s in seqs), n)
    starts = _ints((s.start_pos for s in seqs), n)
    offsets = np.arange(width, dtype=np.int64)[None, :] - (width - counts)[:, None]
    real = offsets >= 0
    positions = starts[:, None] + offsets
    clamped = np.maximum(positions, 0)
    ids = np.zeros((n, width), dtype=np.int64)
    ids[real] = _ints(chain.from_iterable(s.token_ids for s in seqs), int(counts.sum()))
    blocks = batch.tables[rows[:, None], clamped // block_size]
    slots = np.where(real, blocks * block_size + clamped % block_size, scratch_slot)
    lora = np.full(n, -1, dtype=np.int64) if adapter_slots is None else np.array(adapter_slots)
    sample_rows = _ints((s.num_sample_rows for s in seqs), n)
    ends = np.arange(1, n + 1, dtype=np.int64) * width
    table_width = int(batch.num_blocks[rows].max())
    return GraphRows(
        input_ids=ids.ravel(),
        positions=clamped.ravel(),
        slots=slots.ravel(),
        adapter_slots=np.repeat(lora, width),
        seq_lens=starts + counts,
        block_tables=batch.tables[rows, :table_width],
        keep=ranges(ends - sample_rows, sample_rows),
    )
