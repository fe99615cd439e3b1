"""Reference paged attention in plain torch: runs anywhere, and is the oracle for fast kernels."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from workers.attention.metadata import AttentionMetadata

DecodeFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, int | None], torch.Tensor
]
# (k, v, kv_cache, slot_mapping): the step's keys and values into their cache slots
WriteFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
# (q, kv_cache, block_tables, query_starts, seq_lens, max_query_len, scale, window) -> out
PrefillFn = Callable[
    [
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        int,
        float,
        int | None,
    ],
    torch.Tensor,
]
# (q, kv_cache, block_tables, query_starts, seq_lens, tile_seq, tile_index, scale, window)
TiledFn = Callable[
    [
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        float,
        int | None,
    ],
    torch.Tensor,
]


class ReferenceAttention:
    """Causal attention of each sequence's new queries over its cached context.

    kv_cache of one layer: [2, num_blocks, block_size, num_kv_heads, head_dim]
    (index 0 keys, 1 values). Keys and values of the step are written first, then each
    sequence reads its context through its block table. Sequences with one query (decodes)
    go to `decode_fn` all at once: plain torch here, a paged kernel on CUDA. With a
    `prefill_fn` (a paged kernel on CUDA), steps with longer query runs go to it whole.
    Metadata with a tile map (a mixed step's CUDA graph) goes to `tiled_fn` whole: its
    host tuples are placeholders then.
    """

    def __init__(
        self,
        scale: float,
        sliding_window: int | None = None,
        decode_fn: DecodeFn | None = None,
        prefill_fn: PrefillFn | None = None,
        write_fn: WriteFn | None = None,
        tiled_fn: TiledFn | None = None,
    ) -> None:
        self.scale = scale
        self.write_fn = write_fn or write_kv
        self.sliding_window = sliding_window
        self.decode_fn = decode_fn or decode_attention_reference
        self.prefill_fn = prefill_fn
        self.tiled_fn = tiled_fn

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """q [T, Hq, D]; k, v [T, Hkv, D] -> output [T, Hq, D]."""
        self.write_fn(k, v, kv_cache, meta.slot_mapping)
        if meta.decode_only:
            assert meta.seq_lens_tensor is not None
            return self.decode_fn(
                q,
                kv_cache,
                meta.block_tables,
                meta.seq_lens_tensor,
                self.scale,
                self.sliding_window,
            )
        if meta.tile_seq is not None:
            assert self.tiled_fn is not None, "a tile map without a tiled prefill kernel"
            assert meta.seq_lens_tensor is not None and meta.query_start_tensor is not None
            assert meta.tile_index is not None
            return self.tiled_fn(
                q,
                kv_cache,
                meta.block_tables,
                meta.query_start_tensor,
                meta.seq_lens_tensor,
                meta.tile_seq,
                meta.tile_index,
                self.scale,
                self.sliding_window,
            )
        if self.prefill_fn is not None:
            assert meta.seq_lens_tensor is not None and meta.query_start_tensor is not None
            return self.prefill_fn(
                q,
                kv_cache,
                meta.block_tables,
                meta.query_start_tensor,
                meta.seq_lens_tensor,
                meta.max_query_len,
                self.scale,
                self.sliding_window,
            )
        out = torch.empty_like(q)
        starts, lens = meta.query_start_loc, meta.seq_lens
        decodes = [i for i in range(meta.num_seqs) if starts[i + 1] - starts[i] == 1]
        if decodes:
            rows = torch.tensor([starts[i] for i in decodes], device=q.device)
            out[rows] = self.decode_fn(
                q[rows],
                kv_cache,
                meta.block_tables[decodes],
                torch.tensor([lens[i] for i in decodes], device=q.device),
                self.scale,
                self.sliding_window,
            )
        for i in sorted(set(range(meta.num_seqs)) - set(decodes)):
            start, end = starts[i], starts[i + 1]
            if end == start:
                continue
            keys, values = gather_context(kv_cache, meta.block_tables[i], lens[i], meta.block_size)
            q_pos = torch.arange(lens[i] - (end - start), lens[i], device=q.device)
            mask = causal_mask(q_pos, lens[i], self.sliding_window)
            out[start:end] = _attend(q[start:end], keys, values, mask, self.scale)
        return out


def decode_attention_reference(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """One query per sequence over its paged context, all sequences at once (contexts padded
    and masked). q [B, Hq, D]; block_tables [B, max_blocks]; seq_lens [B] -> [B, Hq, D]."""
    block_size = kv_cache.shape[2]
    num_blocks = -(-int(seq_lens.max()) // block_size)
    tables = block_tables[:, :num_blocks]
    keys = kv_cache[0, tables].flatten(1, 2)  # [B, L, Hkv, D]
    values = kv_cache[1, tables].flatten(1, 2)
    mask = causal_mask(seq_lens - 1, keys.shape[1], sliding_window)  # [B, L]
    # Padding reads slots this sequence does not own, which may hold NaN a failed request
    # left behind: a masked score is -inf, but NaN + -inf and 0 * NaN are NaN. Zero them,
    # as the kernels' masked loads do.
    seen = mask[:, :, None, None]
    keys = torch.where(seen, keys, 0)
    values = torch.where(seen, values, 0)
    out = F.scaled_dot_product_attention(
        q.unsqueeze(2),  # [B, Hq, 1, D]
        keys.transpose(1, 2).to(q.dtype),
        values.transpose(1, 2).to(q.dtype),
        attn_mask=mask[:, None, None, :],
        scale=scale,
        enable_gqa=True,
    )
    return out.squeeze(2)


def causal_mask(q_pos: torch.Tensor, num_keys: int, sliding_window: int | None) -> torch.Tensor:
    """Which keys each query sees: causal, within the sliding window. [..., num_keys]"""
    k_pos = torch.arange(num_keys, device=q_pos.device)
    q_pos = q_pos[..., None]
    mask = k_pos <= q_pos
    if sliding_window is not None:
        mask &= k_pos > q_pos - sliding_window
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
