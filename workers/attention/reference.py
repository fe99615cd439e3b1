"""Reference paged attention in plain torch: runs anywhere, and is the oracle for fast kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workers.attention.metadata import AttentionMetadata


class ReferenceAttention:
    """Causal attention of each sequence's new queries over its cached context.

    kv_cache of one layer: [2, num_blocks, block_size, num_kv_heads, head_dim]
    (index 0 keys, 1 values). Keys and values of the step are written first, then each
    sequence gathers its context through its block table.
    """

    def __init__(self, scale: float, sliding_window: int | None = None) -> None:
        self.scale = scale
        self.sliding_window = sliding_window

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """q [T, Hq, D]; k, v [T, Hkv, D] -> output [T, Hq, D]."""
        write_kv(k, v, kv_cache, meta.slot_mapping)
        out = torch.empty_like(q)
        starts, lens = meta.query_start_loc, meta.seq_lens
        decodes = [i for i in range(meta.num_seqs) if starts[i + 1] - starts[i] == 1]
        if decodes:
            rows = torch.tensor([starts[i] for i in decodes], device=q.device)
            out[rows] = self._decode_batch(q[rows], kv_cache, meta, decodes)
        for i in sorted(set(range(meta.num_seqs)) - set(decodes)):
            start, end = starts[i], starts[i + 1]
            if end == start:
                continue
            keys, values = gather_context(kv_cache, meta.block_tables[i], lens[i], meta.block_size)
            mask = self._mask(
                torch.arange(lens[i] - (end - start), lens[i], device=q.device), lens[i]
            )
            out[start:end] = _attend(q[start:end], keys, values, mask, self.scale)
        return out

    def _decode_batch(
        self, q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, seqs: list[int]
    ) -> torch.Tensor:
        """One query per sequence, all sequences at once over their padded contexts.
        q [B, Hq, D] -> [B, Hq, D]."""
        lens = [meta.seq_lens[i] for i in seqs]
        num_blocks = -(-max(lens) // meta.block_size)
        tables = meta.block_tables[seqs, :num_blocks]
        keys = kv_cache[0, tables].flatten(1, 2)  # [B, L, Hkv, D]
        values = kv_cache[1, tables].flatten(1, 2)
        seq_lens = torch.tensor(lens, device=q.device)
        mask = self._mask(seq_lens - 1, keys.shape[1])  # [B, L]
        out = F.scaled_dot_product_attention(
            q.unsqueeze(2),  # [B, Hq, 1, D]
            keys.transpose(1, 2).to(q.dtype),
            values.transpose(1, 2).to(q.dtype),
            attn_mask=mask[:, None, None, :],
            scale=self.scale,
            enable_gqa=True,
        )
        return out.squeeze(2)

    def _mask(self, q_pos: torch.Tensor, num_keys: int) -> torch.Tensor:
        """Which keys each query sees: causal, within the sliding window. [..., num_keys]"""
        k_pos = torch.arange(num_keys, device=q_pos.device)
        q_pos = q_pos[..., None]
        mask = k_pos <= q_pos
        if self.sliding_window is not None:
            mask &= k_pos > q_pos - self.sliding_window
        return mask


def write_kv(
    k: torch.Tensor, v: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """kv_cache[0].flatten(0, 1)[slot_mapping] = k, and the same for v."""
    num_blocks, block_size = kv_cache.shape[1], kv_cache.shape[2]
    flat = kv_cache.view(2, num_blocks * block_size, *kv_cache.shape[3:])
    flat[0, slot_mapping] = k.to(kv_cache.dtype)
    flat[1, slot_mapping] = v.to(kv_cache.dtype)


def gather_context(
    kv_cache: torch.Tensor, block_table: torch.Tensor, ctx_len: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ctx_len keys and values of one sequence: each [ctx_len, Hkv, D]."""
    num_blocks = -(-ctx_len // block_size)
    blocks = block_table[:num_blocks]
    keys = kv_cache[0, blocks].flatten(0, 1)[:ctx_len]
    values = kv_cache[1, blocks].flatten(0, 1)[:ctx_len]
    return keys, values


def _attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """One sequence: q [n, Hq, D], keys/values [ctx, Hkv, D] (GQA: Hq multiple of Hkv)."""
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1),
        keys.transpose(0, 1).to(q.dtype),
        values.transpose(0, 1).to(q.dtype),
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return out.transpose(0, 1)
