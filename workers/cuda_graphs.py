"""StepGraphs: steps of the base model (or with LoRA slots) captured as CUDA graphs, so a
step costs one graph launch instead of hundreds of kernel launches from Python.

Captured shapes: batch buckets of decodes (one token per sequence, through the paged decode
kernel), and, when `max_tokens` > 1, small buckets of T = 2..max_tokens tokens per sequence
(through the paged prefill kernel): speculative verification (the last token plus k drafts)
and a draft model's catch-up (the tokens accepted since its last step). A sequence with
fewer than T tokens is padded at the front: the padding rows sit at the positions just before
its first token, read the real keys there, write their own keys to a scratch block, and their
logits are dropped.

With `mixed_tokens` > 0, steps with prefill chunks are captured too (workers/mixed_graphs.py),
all graphs into one pool, largest first.
"""

from __future__ import annotations

import torch

from adapters.ops import LoRABatch
from adapters.slots import LoRASlots
from workers.attention.metadata import AttentionMetadata
from workers.graph_capture import CaptureJob, capture_all
from workers.host_copy import array_to_device
from workers.mixed_graphs import MixedGraphs
from workers.mixed_rows import model_tile_queries
from workers.models.llama import LlamaForCausalLM
from workers.step_arrays import GraphRows

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256)
MULTI_TOKEN_MAX_BATCH = 64  # speculation steps aside for larger batches


class StepGraphs:
    """Static input buffers sized for the largest shape; a step of B sequences of up to T
    tokens runs the smallest captured bucket >= B for that T, padding rows with a scratch
    block no sequence owns."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        kv_caches: list[torch.Tensor],
        max_batch: int,
        max_blocks_per_seq: int,
        scratch_block: int,
        block_size: int,
        lora_slots: LoRASlots | None = None,
        max_tokens: int = 1,
        mixed_tokens: int = 0,
    ) -> None:
        """mixed_tokens > 0: also mixed steps of up to that many tokens (MixedGraphs)."""
        device = kv_caches[0].device
        self.buckets = [b for b in BUCKETS if b <= max_batch] or [1]
        multi = [b for b in self.buckets if b <= MULTI_TOKEN_MAX_BATCH]
        self.shapes = {1: self.buckets} | {t: multi for t in range(2, max_tokens + 1)}
        top = self.buckets[-1]
        rows = max(b * t for t, buckets in self.shapes.items() for b in buckets)
        self.block_size = block_size
        self.scratch_block = scratch_block
        # Every input the graphs read lives in one int64 buffer, filled on the host (pinned)
        # and sent in one copy per step: per token ids, positions, slots, adapter slot
        # (-1: base model); per sequence context lengths and block tables.
        self.layout = _Layout(rows, top, max_blocks_per_seq)
        self.inputs = torch.zeros(self.layout.size, dtype=torch.long, device=device)
        self.host = torch.zeros(self.layout.size, dtype=torch.long, pin_memory=True)
        self.copied = torch.cuda.Event()
        (
            self.input_ids,
            self.positions,
            self.slots,
            self.token_slots,
            self.seq_lens,
            self.tables,
        ) = self.layout.fields(self.inputs)
        self.host_fields = [f.numpy() for f in self.layout.fields(self.host)]
        self.query_starts = {
            t: torch.arange(0, (top + 1) * t, t, device=device) for t in self.shapes
        }
        self.lora_slots = lora_slots
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.logits: dict[tuple[int, int], torch.Tensor] = {}
        self.mixed = (
            MixedGraphs(
                mixed_tokens,
                top,
                max_blocks_per_seq,
                scratch_block,
                block_size,
                device,
                model_tile_queries(model),
                lora_slots,
            )
            if mixed_tokens > 0
            else None
        )
        self._capture(model, kv_caches)

    @property
    def max_batch(self) -> int:
        return self.buckets[-1]

    @property
    def max_tokens(self) -> int:
        return max(self.shapes)

    def fits(self, width: int, num_seqs: int) -> bool:
        """Whether a captured shape holds a step of num_seqs sequences of up to `width`
        tokens (each sequence sampling its last rows)."""
        return width <= self.max_tokens and num_seqs <= self.shapes[width][-1]

    def run(
        self,
        rows: GraphRows,
        width: int,
        fill: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """float32 logits of every sample row, sequence by sequence (as the eager forward
        returns them), for a step laid out as `width` rows per sequence (gathered from the
        runner's batch); fill: (sequence index, token id) tensors on the device, last
        tokens to replace (placeholders for tokens the previous step samples)."""
        batch = len(rows.seq_lens)
        bucket = next(b for b in self.shapes[width] if b >= batch)
        ids, pos, slot, lora, lens, table = self.host_fields
        scratch = self.scratch_block * self.block_size
        self.copied.synchronize()  # the last step's copy has read the host buffer
        used = slice(0, batch * width)
        ids[used] = rows.input_ids
        pos[used] = rows.positions
        slot[used] = rows.slots
        lora[used] = rows.adapter_slots
        lens[:batch] = rows.seq_lens
        table[:batch, : rows.block_tables.shape[1]] = rows.block_tables  # the rest: never read
        padding = slice(batch * width, bucket * width)  # whole sequences of padding
        ids[padding] = pos[padding] = 0
        slot[padding] = scratch
        lora[padding] = -1
        lens[batch:bucket] = 1
        table[batch:bucket, 0] = self.scratch_block
        self.inputs.copy_(self.host, non_blocking=True)
        self.copied.record()
        if fill is not None:
            index, fill_ids = fill
            self.input_ids.index_copy_(0, index * width + width - 1, fill_ids)
        self.graphs[bucket, width].replay()
        logits = self.logits[bucket, width]
        if width == 1:
            return logits[:batch]
        return logits[array_to_device(rows.keep, logits.device)]

    def _reset_padding(self, bucket: int, width: int) -> None:
        rows = bucket * width
        self.input_ids[:rows] = 0
        self.positions[:rows] = 0
        self.slots[:rows] = self.scratch_block * self.block_size
        self.token_slots[:rows] = -1
        self.seq_lens[:bucket] = 1
        self.tables[:bucket, 0] = self.scratch_block

    def _meta(self, bucket: int, width: int) -> AttentionMetadata:
        rows = bucket * width
        return AttentionMetadata(
            slot_mapping=self.slots[:rows],
            block_tables=self.tables[:bucket],
            query_start_loc=tuple(range(0, rows + 1, width)),
            seq_lens=(1,) * bucket,
            block_size=self.block_size,
            seq_lens_tensor=self.seq_lens[:bucket],
            decode_only=width == 1,
            query_start_tensor=self.query_starts[width][: bucket + 1],
        )

    @torch.inference_mode()
    def _capture(self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor]) -> None:
        shapes = [(b, t) for t, buckets in self.shapes.items() for b in buckets]
        jobs = [self._job(model, kv_caches, bucket, width) for bucket, width in shapes]
        what = "decode steps"
        if self.mixed is not None:
            jobs += self.mixed.capture_jobs(model, kv_caches)
            what = f"decode steps and {len(self.mixed.shapes)} mixed shapes"
        capture_all(jobs, what)

    def _job(
        self, model: LlamaForCausalLM, kv_caches: list[torch.Tensor], bucket: int, width: int
    ) -> CaptureJob:
        rows = bucket * width

        def step() -> torch.Tensor:
            lora = None
            if self.lora_slots is not None:
                lora = LoRABatch(self.lora_slots, self.token_slots[:rows], None)
            meta = self._meta(bucket, width)
            hidden = model(self.input_ids[:rows], self.positions[:rows], kv_caches, meta, lora)
            return model.compute_logits(hidden)

        def store(graph: torch.cuda.CUDAGraph, logits: torch.Tensor) -> None:
            self.graphs[bucket, width] = graph
            self.logits[bucket, width] = logits

        return CaptureJob(rows, lambda: self._reset_padding(bucket, width), step, store)


class _Layout:
    """Where each input sits in the flat buffer: four [rows] token vectors, the [seqs]
    context lengths, then the [seqs, max_blocks] block tables."""

    def __init__(self, rows: int, seqs: int, max_blocks: int) -> None:
        self.rows, self.seqs, self.max_blocks = rows, seqs, max_blocks
        self.size = 4 * rows + seqs * (1 + max_blocks)

    def fields(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        r, s = self.rows, self.seqs
        tokens = list(buffer[: 4 * r].view(4, r).unbind())
        lens = buffer[4 * r : 4 * r + s]
        return [*tokens, lens, buffer[4 * r + s :].view(s, self.max_blocks)]
