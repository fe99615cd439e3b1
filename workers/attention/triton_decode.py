"""Paged-attention decode kernel in Triton: one query per sequence, keys and values read
straight from the block table (no gather, no host sync, safe inside a CUDA graph).

Meaning in plain torch (`workers.attention.reference.decode_attention_reference`): for each
sequence b and head h, softmax(q[b, h] . K[b, :seq_lens[b], h // group].T * scale) @ V.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _paged_decode_kernel(
    q_ptr,
    cache_ptr,
    tables_ptr,
    lens_ptr,
    out_ptr,
    scale,
    window,
    stride_qb,
    stride_qh,
    stride_kv,
    stride_cb,
    stride_ct,
    stride_ch,
    stride_tb,
    stride_ob,
    stride_oh,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    heads = kv_head * GROUP + tl.arange(0, GROUP_PAD)
    head_ok = tl.arange(0, GROUP_PAD) < GROUP
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(
        q_ptr + seq * stride_qb + heads[:, None] * stride_qh + dims[None, :],
        mask=head_ok[:, None],
        other=0.0,
    ).to(tl.float32)
    seq_len = tl.load(lens_ptr + seq)
    first = tl.maximum(seq_len - window, 0)  # sliding window (window = seq_len: none)
    m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    l_i = tl.full([GROUP_PAD], 0.0, tl.float32)
    acc = tl.full([GROUP_PAD, HEAD_DIM], 0.0, tl.float32)
    offs = tl.arange(0, BLOCK_SIZE)
    for blk in range(first // BLOCK_SIZE, (seq_len + BLOCK_SIZE - 1) // BLOCK_SIZE):
        block_id = tl.load(tables_ptr + seq * stride_tb + blk).to(tl.int64)
        pos = blk * BLOCK_SIZE + offs
        valid = (pos < seq_len) & (pos >= first)
        base = cache_ptr + block_id * stride_cb + kv_head * stride_ch
        ptrs = base + offs[:, None] * stride_ct + dims[None, :]
        k = tl.load(ptrs, mask=valid[:, None], other=0.0).to(tl.float32)
        v = tl.load(ptrs + stride_kv, mask=valid[:, None], other=0.0).to(tl.float32)
        # [GROUP_PAD, BS]; float32 whatever precision the scale argument arrives in
        scores = (tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale).to(tl.float32)
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m_i = m_new
    out = acc / tl.maximum(l_i, 1e-20)[:, None]
    tl.store(
        out_ptr + seq * stride_ob + heads[:, None] * stride_oh + dims[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=head_ok[:, None],
    )


def paged_decode_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """q [B, Hq, D]; kv_cache [2, num_blocks, block_size, Hkv, D]; block_tables [B, max_blocks];
    seq_lens [B] (each >= 1) -> [B, Hq, D]."""
    batch, num_heads, head_dim = q.shape
    _, _, block_size, num_kv_heads, _ = kv_cache.shape
    group = num_heads // num_kv_heads
    q = q.contiguous()
    out = torch.empty_like(q)
    window = sliding_window if sliding_window is not None else 1 << 30
    _paged_decode_kernel[(batch, num_kv_heads)](
        q,
        kv_cache,
        block_tables,
        seq_lens,
        out,
        scale,
        window,
        q.stride(0),
        q.stride(1),
        kv_cache.stride(0),
        kv_cache.stride(1),
        kv_cache.stride(2),
        kv_cache.stride(3),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        BLOCK_SIZE=block_size,
        HEAD_DIM=head_dim,
        GROUP=group,
        GROUP_PAD=max(triton.next_power_of_2(group), 1),
    )
    return out
