"""A mixed step (prefill chunks with decodes) as the inputs of a CUDA graph of N token rows
and S sequences: where each input sits in the graph's one-copy buffer, the host function
that lays a step into it (padded to the shape), and the attention metadata the graph reads.

Token rows: the step's real tokens first, sequence after sequence (as the eager forward
lays them out), then padding rows (token 0 at position 0, writing its key and value to the
scratch slot; no sequence owns them, their outputs are dropped). Sequences past the step's
are padding with no queries (context 1 on the scratch block). Each sequence's last row is
its sample row: the graph computes logits for those S rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from adapters.ops import LoRABatch
from adapters.slots import LoRASlots
from workers.attention.metadata import AttentionMetadata
from workers.attention.tiles import max_tiles, tile_map, tile_queries
from workers.host_copy import array_to_device
from workers.input_batch import InputBatch
from workers.models.llama import LlamaForCausalLM
from workers.running_decodes import RunningDecodes
from workers.scheduler_output import ScheduledSeq
from workers.step_arrays import StepArrays, gather, layout

A = TypeVar("A", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class MixedFields(Generic[A]):
    """The buffer's views: per token row ids, positions, slots, adapter slot (-1: base); per
    sequence context length, query offsets (S + 1), sample row, block table; the tile map."""

    input_ids: A
    positions: A
    slots: A
    adapter_slots: A
    seq_lens: A
    query_starts: A
    sample_rows: A
    tile_seq: A
    tile_index: A
    tables: A


class MixedLayout:
    """One flat int64 buffer for shapes of up to `rows` tokens and `seqs` sequences; a
    shape (N, S) reads the first N rows, S sequences and max_tiles(N, S) tile entries of
    `queries_per_tile` queries each (workers.attention.tiles.tile_queries of the model)."""

    def __init__(self, rows: int, seqs: int, max_blocks: int, queries_per_tile: int) -> None:
        self.rows, self.seqs, self.max_blocks = rows, seqs, max_blocks
        self.queries_per_tile = queries_per_tile
        self.tiles = max_tiles(rows, seqs, queries_per_tile)
        self.sizes = [rows] * 4 + [seqs, seqs + 1, seqs] + [self.tiles] * 2 + [seqs * max_blocks]
        self.size = sum(self.sizes)

    def fields(self, buffer: torch.Tensor) -> MixedFields[torch.Tensor]:
        parts = list(torch.split(buffer, self.sizes))
        parts[-1] = parts[-1].view(self.seqs, self.max_blocks)
        return MixedFields(*parts)


@dataclass(frozen=True)
class MixedRows:
    """A step's flat rows (gather's) with each token's adapter slot and which sequences
    sample (their logits are returned, in order)."""

    arrays: StepArrays
    adapter_slots: np.ndarray
    samples: np.ndarray  # bool per sequence

    @property
    def num_tokens(self) -> int:
        return len(self.arrays.input_ids)

    @property
    def num_seqs(self) -> int:
        return len(self.arrays.seq_lens)


def mixed_rows(
    batch: InputBatch,
    seqs: tuple[ScheduledSeq, ...],
    block_size: int,
    adapter_slots: list[int] | None = None,
    decodes: RunningDecodes | None = None,
) -> MixedRows:
    """The step (no prompt-logprob rows; at most one sample row per sequence) as rows."""
    step = layout(batch, seqs, decodes)
    assert step.prompt_rows is None and int(step.sample_rows.max()) <= 1
    arrays = gather(batch, seqs, block_size, step=step)
    n = len(step.rows)
    lora = np.full(n, -1, dtype=np.int64) if adapter_slots is None else np.array(adapter_slots)
    return MixedRows(arrays, np.repeat(lora, step.counts), step.sample_rows == 1)


def fill_mixed(
    host: MixedFields[np.ndarray],
    rows: MixedRows,
    shape: tuple[int, int],
    scratch_block: int,
    block_size: int,
    queries_per_tile: int,
) -> None:
    """Lay `rows` into the host views for shape (N tokens, S sequences), padding included,
    the tile map in tiles of queries_per_tile queries."""
    tokens, seqs = shape
    a = rows.arrays
    n, s = rows.num_tokens, rows.num_seqs
    assert n <= tokens and s <= seqs
    host.input_ids[:n] = a.input_ids
    host.positions[:n] = a.positions
    host.slots[:n] = a.slots
    host.adapter_slots[:n] = rows.adapter_slots
    host.input_ids[n:tokens] = host.positions[n:tokens] = 0
    host.slots[n:tokens] = scratch_block * block_size
    host.adapter_slots[n:tokens] = -1
    host.seq_lens[:s] = a.seq_lens
    host.seq_lens[s:seqs] = 1
    host.query_starts[: s + 1] = a.query_start_loc
    host.query_starts[s + 1 : seqs + 1] = n
    host.sample_rows[:s] = a.query_start_loc[1:] - 1
    host.sample_rows[s:seqs] = 0
    num_tiles = max_tiles(tokens, seqs, queries_per_tile)
    tile_seq, tile_index = tile_map(np.diff(a.query_start_loc), num_tiles, queries_per_tile)
    host.tile_seq[: len(tile_seq)] = tile_seq
    host.tile_index[: len(tile_index)] = tile_index
    host.tables[:s, : a.block_tables.shape[1]] = a.block_tables  # the rest: never read
    host.tables[s:seqs, 0] = scratch_block


def mixed_meta(
    fields: MixedFields[torch.Tensor],
    shape: tuple[int, int],
    block_size: int,
    queries_per_tile: int,
) -> AttentionMetadata:
    """What attention reads for shape (N, S): device tensors only (the host tuples are
    placeholders), the tile map sending prefill attention to the tiled kernel."""
    tokens, seqs = shape
    tiles = max_tiles(tokens, seqs, queries_per_tile)
    return AttentionMetadata(
        slot_mapping=fields.slots[:tokens],
        block_tables=fields.tables[:seqs],
        query_start_loc=(0,) * (seqs + 1),
        seq_lens=(1,) * seqs,
        block_size=block_size,
        seq_lens_tensor=fields.seq_lens[:seqs],
        query_start_tensor=fields.query_starts[: seqs + 1],
        tile_seq=fields.tile_seq[:tiles],
        tile_index=fields.tile_index[:tiles],
    )


def model_tile_queries(model: LlamaForCausalLM) -> int:
    """Queries per prefill tile for the model's attention (its query heads per KV head)."""
    cfg = model.config
    return tile_queries(cfg.num_attention_heads // cfg.num_key_value_heads)


def host_views(fields: MixedFields[torch.Tensor]) -> MixedFields[np.ndarray]:
    """The numpy views of a host (CPU) buffer's fields."""
    return MixedFields(*(getattr(fields, f).numpy() for f in MixedFields.__dataclass_fields__))


def mixed_forward(
    model: LlamaForCausalLM,
    kv_caches: list[torch.Tensor],
    fields: MixedFields[torch.Tensor],
    shape: tuple[int, int],
    block_size: int,
    queries_per_tile: int,
    lora_slots: LoRASlots | None = None,
) -> torch.Tensor:
    """The forward a mixed graph records: float32 logits of the S sample rows, [S, vocab];
    the tile map in tiles of queries_per_tile queries, as fill_mixed laid it."""
    tokens, seqs = shape
    lora = None
    if lora_slots is not None:
        lora = LoRABatch(lora_slots, fields.adapter_slots[:tokens], None)
    meta = mixed_meta(fields, shape, block_size, queries_per_tile)
    hidden = model(fields.input_ids[:tokens], fields.positions[:tokens], kv_caches, meta, lora)
    return model.compute_logits(hidden[fields.sample_rows[:seqs]])


def sampled_logits(logits: torch.Tensor, rows: MixedRows) -> torch.Tensor:
    """The rows of a shape's logits [S, vocab] that the step's sampling sequences own."""
    if rows.samples.all():
        return logits[: rows.num_seqs]
    return logits[array_to_device(np.flatnonzero(rows.samples), logits.device)]


def smallest_shape(
    shapes: list[tuple[int, int]], num_tokens: int, num_seqs: int
) -> tuple[int, int]:
    """The first of `shapes` (ordered by tokens, then sequences) holding the step."""
    return next(s for s in shapes if s[0] >= num_tokens and s[1] >= num_seqs)
