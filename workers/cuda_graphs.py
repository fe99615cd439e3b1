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
        lora_slots: LoRASlots | None = None,
    ) -> None:
        device = kv_caches[0].device
        self.buckets = [b for b in BUCKETS if b <= max_batch] or [1]
        top = self.buckets[-1]
        self.block_size = block_size
        self.scratch_block = scratch_block
        # Every input the graphs read lives in one int64 buffer, filled on the host (pinned)
        # and sent in one copy per step: ids, positions, slots, seq_lens, adapter slot of
        # each row (-1: base model), then the block tables.
        size = top * (5 + max_blocks_per_seq)
        self.inputs = torch.zeros(size, dtype=torch.long, device=device)
        self.host = torch.zeros(size, dtype=torch.long, pin_memory=True)
        self.copied = torch.cuda.Event()
        (
            self.input_ids,
            self.positions,
            self.slots,
            self.seq_lens,
            self.token_slots,
            self.tables,
        ) = _fields(self.inputs, top, max_blocks_per_seq)
        self.host_fields = [f.numpy() for f in _fields(self.host, top, max_blocks_per_seq)]
        self.lora_slots = lora_slots
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self._capture(model, kv_caches)

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
        ids, pos, slot, lens, lora, table = self.host_fields
        self.copied.synchronize()  # the last step's copy has read the host buffer
        ids[:batch] = input_ids
        pos[:batch] = positions
        slot[:batch] = slots
        lens[:batch] = pos[:batch] + 1
        lora[:batch] = -1 if adapter_slots is None else adapter_slots
        for row, blocks in enumerate(tables):  # entries past a row's blocks are never read
            table[row, : len(blocks)] = blocks
        ids[batch:bucket] = 0  # padding rows: position 0 of the scratch block
        pos[batch:bucket] = 0
        slot[batch:bucket] = self.scratch_block * self.block_size
        lens[batch:bucket] = 1
        lora[batch:bucket] = -1
        table[batch:bucket, 0] = self.scratch_block
        self.inputs.copy_(self.host, non_blocking=True)
        self.copied.record()
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
    def _capture(self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor]) -> None:
        def forward(ids: torch.Tensor, pos: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
            b = ids.shape[0]
            lora = None
            if self.lora_slots is not None:
                lora = LoRABatch(self.lora_slots, self.token_slots[:b], None)
            return model.compute_logits(model(ids, pos, kv_caches, meta, lora))

        pool = torch.cuda.graph_pool_handle()
        for bucket in reversed(self.buckets):  # largest first: smaller ones reuse its memory
            self._reset_padding(0, bucket)

            def step(b: int = bucket) -> torch.Tensor:
                return forward(self.input_ids[:b], self.positions[:b], self._meta(b))

            step()  # compile kernels and settle allocations outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.logits[bucket] = step()
            self.graphs[bucket] = graph
        torch.cuda.synchronize()


def _fields(buffer: torch.Tensor, rows: int, max_blocks: int) -> list[torch.Tensor]:
    """Views of the input buffer: five [rows] vectors, then the [rows, max_blocks] tables."""
    vectors = list(buffer[: 5 * rows].view(5, rows).unbind())
    return [*vectors, buffer[5 * rows :].view(rows, max_blocks)]
