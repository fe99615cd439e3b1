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
        num_kv_heads = k.shape[1]
        group = q.shape[1] // num_kv_heads
        for i, ctx_len in enumerate(meta.seq_lens):
            start, end = meta.query_start_loc[i], meta.query_start_loc[i + 1]
            if end == start:
                continue
            keys, values = gather_context(kv_cache, meta.block_tables[i], ctx_len, meta.block_size)
            mask = self._mask(end - start, ctx_len, q.device)
            out[start:end] = _attend(q[start:end], keys, values, mask, group, self.scale)
        return out

    def _mask(self, num_queries: int, ctx_len: int, device: torch.device) -> torch.Tensor:
        q_pos = torch.arange(ctx_len - num_queries, ctx_len, device=device)[:, None]
        k_pos = torch.arange(ctx_len, device=device)[None, :]
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
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    group: int,
    scale: float,
) -> torch.Tensor:
    # [n, H, D] -> [H, n, D]; kv heads repeated to match query heads (GQA).
    qh = q.transpose(0, 1)
    kh = keys.transpose(0, 1).repeat_interleave(group, dim=0).to(q.dtype)
    vh = values.transpose(0, 1).repeat_interleave(group, dim=0).to(q.dtype)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale)
    return out.transpose(0, 1)
