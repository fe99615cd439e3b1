"""MixedGraphs: steps with prefill chunks (and decodes) captured as CUDA graphs, one per
shape (N token rows, S sequences); a step runs the smallest shape that holds it, padded as
workers/mixed_rows.py lays it out. Prefill attention runs the tiled kernel (its grid fixed
by the shape, a tile map on the device), so the graph reads no host ints."""

from __future__ import annotations

import torch

from adapters.slots import LoRASlots
from workers.graph_capture import CaptureJob
from workers.mixed_rows import (
    MixedLayout,
    MixedRows,
    fill_mixed,
    host_views,
    mixed_forward,
    sampled_logits,
    smallest_shape,
)
from workers.models.llama import LlamaForCausalLM

TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Coarse: a padding sequence costs one logits row and no attention work.
SEQ_BUCKETS = (4, 16, 64, 256)


def mixed_shapes(max_tokens: int, max_seqs: int) -> list[tuple[int, int]]:
    """(N, S) shapes: N in TOKEN_BUCKETS up to max_tokens (itself the last), S in
    SEQ_BUCKETS below min(N, max_seqs) and that bound itself: any step of n <= max_tokens
    tokens over s <= min(n, max_seqs) sequences fits one."""
    tokens = [n for n in TOKEN_BUCKETS if n < max_tokens] + [max_tokens]
    shapes = []
    for n in tokens:
        top = min(n, max_seqs)
        shapes += [(n, s) for s in SEQ_BUCKETS if s < top] + [(n, top)]
    return shapes


class MixedGraphs:
    """Static inputs (one int64 buffer, filled on the host and sent in one copy per step)
    for the largest shape; graphs captured by StepGraphs with its own, into one pool."""

    def __init__(
        self,
        max_tokens: int,
        max_seqs: int,
        max_blocks_per_seq: int,
        scratch_block: int,
        block_size: int,
        device: torch.device,
        queries_per_tile: int,
        lora_slots: LoRASlots | None = None,
    ) -> None:
        """queries_per_tile: the model's (workers.mixed_rows.model_tile_queries)."""
        self.shapes = mixed_shapes(max_tokens, max_seqs)
        self.max_tokens, self.max_seqs = max_tokens, max_seqs
        self.scratch_block, self.block_size = scratch_block, block_size
        self.layout = MixedLayout(max_tokens, max_seqs, max_blocks_per_seq, queries_per_tile)
        self.inputs = torch.zeros(self.layout.size, dtype=torch.long, device=device)
        self.host = torch.zeros(self.layout.size, dtype=torch.long, pin_memory=True)
        self.copied = torch.cuda.Event()
        self.fields = self.layout.fields(self.inputs)
        self.host_fields = host_views(self.layout.fields(self.host))
        self.lora_slots = lora_slots
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.logits: dict[tuple[int, int], torch.Tensor] = {}

    def fits(self, num_tokens: int, num_seqs: int) -> bool:
        return num_tokens <= self.max_tokens and num_seqs <= self.max_seqs

    def run(
        self, rows: MixedRows, fill: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """float32 logits of the sampling sequences' rows, in order (as the eager forward
        returns them); fill: (token row, token id) tensors on the device, placeholders the
        previous step samples."""
        shape = smallest_shape(self.shapes, rows.num_tokens, rows.num_seqs)
        self.copied.synchronize()  # the last step's copy has read the host buffer
        fill_mixed(
            self.host_fields,
            rows,
            shape,
            self.scratch_block,
            self.block_size,
            self.layout.queries_per_tile,
        )
        self.inputs.copy_(self.host, non_blocking=True)
        self.copied.record()
        if fill is not None:
            self.fields.input_ids.index_copy_(0, *fill)
        self.graphs[shape].replay()
        return sampled_logits(self.logits[shape], rows)

    def capture_jobs(
        self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor]
    ) -> list[CaptureJob]:
        return [self._job(model, kv_caches, shape) for shape in self.shapes]

    def _job(
        self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor], shape: tuple[int, int]
    ) -> CaptureJob:
        def step() -> torch.Tensor:
            return mixed_forward(
                model,
                kv_caches,
                self.fields,
                shape,
                self.block_size,
                self.layout.queries_per_tile,
                self.lora_slots,
            )

        def store(graph: torch.cuda.CUDAGraph, logits: torch.Tensor) -> None:
            self.graphs[shape] = graph
            self.logits[shape] = logits

        return CaptureJob(shape[0], lambda: self._reset(shape), step, store)

    def _reset(self, shape: tuple[int, int]) -> None:
        """The whole shape as padding: no queries, rows writing to the scratch slot."""
        f, (tokens, seqs) = self.fields, shape
        f.input_ids[:tokens] = 0
        f.positions[:tokens] = 0
        f.slots[:tokens] = self.scratch_block * self.block_size
        f.adapter_slots[:tokens] = -1
        f.seq_lens[:seqs] = 1
        f.query_starts[: seqs + 1] = 0
        f.sample_rows[:seqs] = 0
        f.tile_seq.fill_(-1)
        f.tile_index.fill_(-1)
        f.tables[:seqs, 0] = self.scratch_block
