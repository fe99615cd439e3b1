"""DecodeGraphs: the decode step (one new token per sequence, base model) captured as CUDA
graphs for bucketed batch sizes, so a step costs one graph launch instead of hundreds of
kernel launches from Python."""

from __future__ import annotations

import torch

from adapters.ops import LoRABatch
from adapters.slots import LoRASlots
from workers.attention.metadata import AttentionMetadata
from workers.models.llama import LlamaForCausalLM

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256)


class DecodeGraphs:
    """Static input buffers sized for the largest bucket; a batch of B sequences runs the
    smallest captured bucket >= B, padding rows with a scratch block no sequence owns."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        kv_caches: list[torch.Tensor],
        max_batch: int,
        max_blocks_per_seq: int,
        scratch_block: int,
        block_size: int,
        compile_model: bool = False,
        lora_slots: LoRASlots | None = None,
    ) -> None:
        """compile_model: run the forward through torch.compile before capturing, fusing the
        small element-wise kernels (norms, rotary, activations) between the matmuls."""
        device = kv_caches[0].device
        self.buckets = [b for b in BUCKETS if b <= max_batch] or [1]
        top = self.buckets[-1]
        self.block_size = block_size
        self.scratch_block = scratch_block
        self.input_ids = torch.zeros(top, dtype=torch.long, device=device)
        self.positions = torch.zeros(top, dtype=torch.long, device=device)
        self.slots = torch.zeros(top, dtype=torch.long, device=device)
        self.tables = torch.full(
            (top, max_blocks_per_seq), scratch_block, dtype=torch.long, device=device
        )
        self.seq_lens = torch.ones(top, dtype=torch.long, device=device)
        # Adapter slot of each row (-1: base model), read by the LoRA kernel in the graph.
        self.token_slots = torch.full((top,), -1, dtype=torch.long, device=device)
        self.lora_slots = lora_slots
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self._capture(model, kv_caches, compile_model)

    @property
    def max_batch(self) -> int:
        return self.buckets[-1]

    def run(
        self,
        input_ids: list[int],
        positions: list[int],
        slots: list[int],
        tables: list[tuple[int, ...]],
        adapter_slots: list[int] | None = None,
    ) -> torch.Tensor:
        """Logits [B, vocab] of one decode step for B = len(input_ids) sequences;
        adapter_slots: each row's LoRA slot (-1 or None: base model)."""
        batch = len(input_ids)
        bucket = next(b for b in self.buckets if b >= batch)
        self._reset_padding(batch, bucket)
        device = self.input_ids.device
        self.input_ids[:batch].copy_(torch.tensor(input_ids), non_blocking=True)
        host_positions = torch.tensor(positions)
        self.positions[:batch].copy_(host_positions, non_blocking=True)
        self.slots[:batch].copy_(torch.tensor(slots), non_blocking=True)
        self.seq_lens[:batch].copy_(host_positions + 1, non_blocking=True)
        width = max(len(t) for t in tables)
        padded = [list(t) + [self.scratch_block] * (width - len(t)) for t in tables]
        self.tables[:batch, :width].copy_(torch.tensor(padded, device=device))
        if self.lora_slots is not None:
            self.token_slots[:batch].copy_(torch.tensor(adapter_slots or [-1] * batch))
        self.graphs[bucket].replay()
        return self.logits[bucket][:batch]

    def _reset_padding(self, batch: int, bucket: int) -> None:
        self.input_ids[batch:bucket] = 0
        self.positions[batch:bucket] = 0
        self.slots[batch:bucket] = self.scratch_block * self.block_size
        self.seq_lens[batch:bucket] = 1
        self.tables[batch:bucket, 0] = self.scratch_block
        self.token_slots[batch:bucket] = -1

    def _meta(self, bucket: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slots[:bucket],
            block_tables=self.tables[:bucket],
            query_start_loc=tuple(range(bucket + 1)),
            seq_lens=(1,) * bucket,
            block_size=self.block_size,
            seq_lens_tensor=self.seq_lens[:bucket],
            decode_only=True,
        )

    @torch.inference_mode()
    def _capture(
        self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor], compile_model: bool
    ) -> None:
        def forward(ids: torch.Tensor, pos: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
            b = ids.shape[0]
            lora = None
            if self.lora_slots is not None:
                lora = LoRABatch(self.lora_slots, self.token_slots[:b], None)
            return model.compute_logits(model(ids, pos, kv_caches, meta, lora))

        run = torch.compile(forward, dynamic=True) if compile_model else forward
        pool = torch.cuda.graph_pool_handle()
        for bucket in reversed(self.buckets):  # largest first: smaller ones reuse its memory
            self._reset_padding(0, bucket)

            def step(b: int = bucket) -> torch.Tensor:
                return run(self.input_ids[:b], self.positions[:b], self._meta(b))

            step()  # compile kernels and settle allocations outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.logits[bucket] = step()
            self.graphs[bucket] = graph
        torch.cuda.synchronize()
