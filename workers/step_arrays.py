"""A step's inputs gathered from the persistent batch as host arrays, with whole-array
numpy operations (no per-token Python): flat rows for the eager forward, and rows padded to
a captured shape for the CUDA graphs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np

from workers.input_batch import InputBatch
from workers.running_decodes import RunningDecodes
from workers.scheduler_output import ScheduledSeq


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + length) for each pair."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total, dtype=np.int64)


def _ints(values: Iterable[int], count: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=count)


@dataclass(frozen=True)
class Layout:
    """A step's sequences (its ScheduledSeqs, then its RunningDecodes) as arrays: per
    sequence its batch row, token count, first position, sample rows, and (None: none has
    any) prompt rows and their offset from its first position; every token id, flat."""

    rows: np.ndarray
    counts: np.ndarray
    starts: np.ndarray
    input_ids: np.ndarray
    sample_rows: np.ndarray
    prompt_rows: np.ndarray | None = None
    prompt_offsets: np.ndarray | None = None


def layout(
    batch: InputBatch, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None = None
) -> Layout:
    parts = []
    if seqs:
        parts.append(_seqs_layout(batch, seqs))
    if decodes is not None and len(decodes):
        n = len(decodes)
        ones = np.ones(n, dtype=np.int64)
        parts.append(
            Layout(
                rows=batch.decode_rows(decodes),
                counts=ones,
                starts=np.array(decodes.positions, dtype=np.int64),
                input_ids=np.array(decodes.token_ids, dtype=np.int64),
                sample_rows=ones,
            )
        )
    if len(parts) == 1:
        return parts[0]
    first, second = parts
    prompt_rows = prompt_offsets = None
    if first.prompt_rows is not None and first.prompt_offsets is not None:
        zeros = np.zeros(len(second.rows), dtype=np.int64)
        prompt_rows = np.concatenate((first.prompt_rows, zeros))
        prompt_offsets = np.concatenate((first.prompt_offsets, zeros))
    return Layout(
        rows=np.concatenate((first.rows, second.rows)),
        counts=np.concatenate((first.counts, second.counts)),
        starts=np.concatenate((first.starts, second.starts)),
        input_ids=np.concatenate((first.input_ids, second.input_ids)),
        sample_rows=np.concatenate((first.sample_rows, second.sample_rows)),
        prompt_rows=prompt_rows,
        prompt_offsets=prompt_offsets,
    )


def _seqs_layout(batch: InputBatch, seqs: tuple[ScheduledSeq, ...]) -> Layout:
    n = len(seqs)
    counts = _ints((s.num_tokens for s in seqs), n)
    prompt_rows = prompt_offsets = None
    if any(s.num_prompt_rows for s in seqs):
        prompt_rows = _ints((s.num_prompt_rows for s in seqs), n)
        prompt_offsets = _ints((s.prompt_row_start - s.start_pos for s in seqs), n)
    return Layout(
        rows=batch.rows(seqs),
        counts=counts,
        starts=_ints((s.start_pos for s in seqs), n),
        input_ids=_ints(chain.from_iterable(s.token_ids for s in seqs), int(counts.sum())),
        sample_rows=_ints((s.num_sample_rows for s in seqs), n),
        prompt_rows=prompt_rows,
        prompt_offsets=prompt_offsets,
    )


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


def gather(
    batch: InputBatch,
    seqs: tuple[ScheduledSeq, ...],
    block_size: int,
    decodes: RunningDecodes | None = None,
    step: Layout | None = None,
) -> StepArrays:
    """The step's flat inputs (the batch holds every sequence's table)."""
    step = layout(batch, seqs, decodes) if step is None else step
    rows, counts, starts = step.rows, step.counts, step.starts
    n = len(rows)
    query_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=query_start[1:])
    total = int(query_start[-1])
    positions = starts.copy() if total == n else ranges(starts, counts)
    token_rows = rows if total == n else np.repeat(rows, counts)
    blocks = batch.tables[token_rows, positions // block_size]
    width = int(batch.num_blocks[rows].max())
    return StepArrays(
        input_ids=step.input_ids,
        positions=positions,
        slots=blocks * block_size + positions % block_size,
        query_start_loc=query_start,
        seq_lens=starts + counts,
        block_tables=batch.tables[rows, :width],
        logits_indices=_logits_indices(step, query_start),
    )


def _logits_indices(step: Layout, query_start: np.ndarray) -> np.ndarray:
    """Each sequence's prompt rows (prompt logprobs), then its sample rows."""
    ends = query_start[1:]
    sample_rows = step.sample_rows
    if step.prompt_rows is None or step.prompt_offsets is None:
        return ranges(ends - sample_rows, sample_rows)
    starts = np.stack((query_start[:-1] + step.prompt_offsets, ends - sample_rows), axis=1)
    return ranges(starts.ravel(), np.stack((step.prompt_rows, sample_rows), axis=1).ravel())


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
    decodes: RunningDecodes | None = None,
) -> GraphRows:
    step = layout(batch, seqs, decodes)
    rows, counts, starts = step.rows, step.counts, step.starts
    n = len(rows)
    offsets = np.arange(width, dtype=np.int64)[None, :] - (width - counts)[:, None]
    real = offsets >= 0
    positions = starts[:, None] + offsets
    clamped = np.maximum(positions, 0)
    ids = np.zeros((n, width), dtype=np.int64)
    ids[real] = step.input_ids
    blocks = batch.tables[rows[:, None], clamped // block_size]
    slots = np.where(real, blocks * block_size + clamped % block_size, scratch_slot)
    lora = np.full(n, -1, dtype=np.int64) if adapter_slots is None else np.array(adapter_slots)
    sample_rows = step.sample_rows
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
