"""DraftChain: a greedy drafting round's one-token steps without the host in the loop.

A draft model's round is a catch-up step (the tokens accepted since its last round), then
k - 1 steps of one token each, every one fed the argmax of the step before. The host knows
each of those steps' positions, KV slots and context lengths before the round starts (its
slots are allocated up front), so only the token ids depend on the device: they pass from
step to step on the device and cross to the host once, at the end of the round. On CUDA the
k - 1 steps replay as one CUDA graph per (batch bucket, steps); elsewhere, or past the
captured shapes, they run eagerly, each step over the sequences still drafting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workers.attention.metadata import AttentionMetadata
from workers.cuda_graphs import BUCKETS, MULTI_TOKEN_MAX_BATCH
from workers.graph_capture import CaptureJob, capture_all
from workers.host_copy import array_to_device
from workers.models.llama import LlamaForCausalLM


@dataclass(frozen=True)
class ChainRows:
    """The host side of a round's chained steps for B sequences: [steps, B] positions, KV
    slots, context lengths and whether the sequence still drafts at that step (one that is
    done writes to the scratch slot and keeps its length); [B, blocks] block tables."""

    positions: np.ndarray
    slots: np.ndarray
    seq_lens: np.ndarray
    active: np.ndarray
    block_tables: np.ndarray

    @property
    def num_steps(self) -> int:
        return self.positions.shape[0]


def chain_rows(
    starts: Sequence[int],
    steps: Sequence[int],
    tables: Sequence[Sequence[int]],
    block_size: int,
    scratch_slot: int,
) -> ChainRows:
    """starts[i]: the position of sequence i's first chained token (its context holds every
    position before it); steps[i]: how many chained steps it takes; tables[i]: its blocks,
    covering position starts[i] + steps[i] - 1."""
    start = np.asarray(starts, dtype=np.int64)[None, :]
    count = np.asarray(steps, dtype=np.int64)[None, :]
    step = np.arange(int(count.max(initial=0)), dtype=np.int64)[:, None]
    active = step < count
    positions = start + np.minimum(step, np.maximum(count - 1, 0))
    width = max((len(t) for t in tables), default=1)
    table = np.zeros((len(tables), max(width, 1)), dtype=np.int64)
    for i, blocks in enumerate(tables):
        table[i, : len(blocks)] = blocks
    index = np.minimum(positions // block_size, table.shape[1] - 1)  # done rows: any block
    block = np.take_along_axis(table.T, index, axis=0)
    slots = np.where(active, block * block_size + positions % block_size, scratch_slot)
    return ChainRows(positions, slots, positions + active, active, table)


class DraftChain:
    """Runs chained steps of a draft model over its paged KV cache (the model's runner's)."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        kv_caches: list[torch.Tensor],
        block_size: int,
        max_steps: int,
        graph_batch: int = 0,
        max_blocks: int = 0,
        scratch_block: int = -1,
    ) -> None:
        """graph_batch > 0 (CUDA; scratch_block a block no sequence owns): chains of up to
        max_steps steps over up to min(graph_batch, MULTI_TOKEN_MAX_BATCH) sequences replay
        CUDA graphs."""
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = kv_caches[0].device
        use_graphs = graph_batch > 0 and max_steps > 0 and self.device.type == "cuda"
        self.graphs = (
            _ChainGraphs(
                model,
                kv_caches,
                min(graph_batch, MULTI_TOKEN_MAX_BATCH),
                max_steps,
                max_blocks,
                scratch_block,
                block_size,
            )
            if use_graphs
            else None
        )

    @property
    def scratch_slot(self) -> int:
        return self.graphs.scratch_slot if self.graphs is not None else -1

    @torch.inference_mode()
    def run(self, first: torch.Tensor, rows: ChainRows) -> torch.Tensor:
        """[steps, B] token ids on the device: row j holds each sequence's argmax after
        chained step j, the step fed `first` (each sequence's argmax before the chain) for
        j = 0. Entries past a sequence's steps are undefined."""
        graphs = self.graphs
        if graphs is not None and graphs.fits(len(first), rows.num_steps):
            return graphs.run(first, rows)
        return self._eager(first, rows)

    def _eager(self, first: torch.Tensor, rows: ChainRows) -> torch.Tensor:
        ids = first.clone()
        out = torch.empty((rows.num_steps, len(first)), dtype=torch.long, device=self.device)
        tables = array_to_device(rows.block_tables, self.device)
        for j in range(rows.num_steps):
            active = np.flatnonzero(rows.active[j])
            index = array_to_device(active, self.device)
            lens = rows.seq_lens[j, active]
            meta = AttentionMetadata(
                slot_mapping=array_to_device(rows.slots[j, active], self.device),
                block_tables=tables[index],
                query_start_loc=tuple(range(len(active) + 1)),
                seq_lens=tuple(lens.tolist()),
                block_size=self.block_size,
                seq_lens_tensor=array_to_device(lens, self.device),
                decode_only=True,
                query_start_tensor=torch.arange(len(active) + 1, device=self.device),
            )
            positions = array_to_device(rows.positions[j, active], self.device)
            hidden = self.model(ids[index], positions, self.kv_caches, meta, None)
            ids[index] = self.model.compute_logits(hidden).argmax(-1)
            out[j] = ids
        return out


class _ChainGraphs:
    """Static inputs for the largest shape, in one int64 buffer sent in one copy per round:
    [steps, seqs] positions, slots and context lengths, then [seqs, max_blocks] block
    tables; the first step's ids in a buffer of their own (they come from the device)."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        kv_caches: list[torch.Tensor],
        max_batch: int,
        max_steps: int,
        max_blocks: int,
        scratch_block: int,
        block_size: int,
    ) -> None:
        device = kv_caches[0].device
        self.buckets = [b for b in BUCKETS if b <= max_batch] or [1]
        self.max_steps = max_steps
        self.scratch_block = scratch_block
        self.scratch_slot = scratch_block * block_size
        self.block_size = block_size
        top = self.buckets[-1]
        size = 3 * max_steps * top + top * max_blocks
        self.inputs = torch.zeros(size, dtype=torch.long, device=device)
        self.host = torch.zeros(size, dtype=torch.long, pin_memory=True)
        self.copied = torch.cuda.Event()
        self.positions, self.slots, self.seq_lens, self.tables = _fields(
            self.inputs, max_steps, top, max_blocks
        )
        self.host_fields = [f.numpy() for f in _fields(self.host, max_steps, top, max_blocks)]
        self.first = torch.zeros(top, dtype=torch.long, device=device)
        self.query_start = torch.arange(top + 1, device=device)
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.out: dict[tuple[int, int], torch.Tensor] = {}
        jobs = [
            self._job(model, kv_caches, bucket, steps)
            for bucket in self.buckets
            for steps in range(1, max_steps + 1)
        ]
        capture_all(jobs, "draft chains")

    def fits(self, num_seqs: int, num_steps: int) -> bool:
        return num_seqs <= self.buckets[-1] and 0 < num_steps <= self.max_steps

    def run(self, first: torch.Tensor, rows: ChainRows) -> torch.Tensor:
        batch, steps = len(first), rows.num_steps
        bucket = next(b for b in self.buckets if b >= batch)
        pos, slot, lens, table = self.host_fields
        self.copied.synchronize()  # the last round's copy has read the host buffer
        pos[:steps, :batch] = rows.positions
        slot[:steps, :batch] = rows.slots
        lens[:steps, :batch] = rows.seq_lens
        table[:batch, : rows.block_tables.shape[1]] = rows.block_tables  # the rest: never read
        pos[:steps, batch:bucket] = 0  # padding sequences: one key, in the scratch block
        slot[:steps, batch:bucket] = self.scratch_slot
        lens[:steps, batch:bucket] = 1
        table[batch:bucket, 0] = self.scratch_block
        self.inputs.copy_(self.host, non_blocking=True)
        self.copied.record()
        self.first[:batch].copy_(first)
        self.graphs[bucket, steps].replay()
        return self.out[bucket, steps][:, :batch]

    def _reset(self, bucket: int, steps: int) -> None:
        self.first[:bucket] = 0
        self.positions[:steps, :bucket] = 0
        self.slots[:steps, :bucket] = self.scratch_slot
        self.seq_lens[:steps, :bucket] = 1
        self.tables[:bucket, 0] = self.scratch_block

    def _job(
        self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor], bucket: int, steps: int
    ) -> CaptureJob:
        def chain() -> torch.Tensor:
            ids = self.first[:bucket]
            out = []
            for j in range(steps):
                meta = AttentionMetadata(
                    slot_mapping=self.slots[j, :bucket],
                    block_tables=self.tables[:bucket],
                    query_start_loc=tuple(range(bucket + 1)),
                    seq_lens=(1,) * bucket,  # placeholders: the kernels read the tensors
                    block_size=self.block_size,
                    seq_lens_tensor=self.seq_lens[j, :bucket],
                    decode_only=True,
                    query_start_tensor=self.query_start[: bucket + 1],
                )
                hidden = model(ids, self.positions[j, :bucket], kv_caches, meta, None)
                ids = model.compute_logits(hidden).argmax(-1)
                out.append(ids)
            return torch.stack(out)

        def store(graph: torch.cuda.CUDAGraph, out: torch.Tensor) -> None:
            self.graphs[bucket, steps] = graph
            self.out[bucket, steps] = out

        return CaptureJob(bucket * steps, lambda: self._reset(bucket, steps), chain, store)


def _fields(
    buffer: torch.Tensor, steps: int, seqs: int, max_blocks: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    per_step = steps * seqs
    pos, slot, lens = buffer[: 3 * per_step].view(3, steps, seqs).unbind()
    return pos, slot, lens, buffer[3 * per_step :].view(seqs, max_blocks)
