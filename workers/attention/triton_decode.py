"""Paged-attention decode kernel in Triton: one query per sequence, keys and values read
straight from the block table (no gather, no host sync, safe inside a CUDA graph).

Meaning in plain torch (`workers.attention.reference.decode_attention_reference`): for each
sequence b and head h, softmax(q[b, h] . K[b, :seq_lens[b], h // group].T * scale) @ V.

Work split ("flash decoding"): a program takes one sequence, one KV head with all the query
heads of its group (one matmul per tile of keys), and one slice of the context. When the
batch alone cannot fill the GPU the context is cut into slices whose partial softmax sums a
second, small kernel merges; a large batch runs each context in one slice and skips it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE = 64  # keys per inner iteration
MIN_ROWS = 16  # smallest M of tl.dot: the group's query heads are padded up to it


@triton.jit
def _decode_kernel(
    q_ptr,
    cache_ptr,
    tables_ptr,
    lens_ptr,
    out_ptr,
    part_acc_ptr,
    part_ml_ptr,
    scale,
    window,
    split_len,
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
    ROWS: tl.constexpr,
    TILE: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    rows = tl.arange(0, ROWS)
    heads = kv_head * GROUP + rows
    row_ok = rows < GROUP
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(
        q_ptr + seq * stride_qb + heads[:, None] * stride_qh + dims[None, :],
        mask=row_ok[:, None],
        other=0.0,
    )
    seq_len = tl.load(lens_ptr + seq)
    first = tl.maximum(seq_len - window, 0)  # sliding window (window >= seq_len: none)
    lo = tl.maximum(split * split_len, (first // TILE) * TILE)
    hi = tl.minimum((split + 1) * split_len, seq_len)
    m_i = tl.full([ROWS], float("-inf"), tl.float32)
    l_i = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, HEAD_DIM], tl.float32)
    offs = tl.arange(0, TILE)
    for start in range(lo, hi, TILE):
        pos = start + offs
        valid = (pos < hi) & (pos >= first)
        page = tl.load(tables_ptr + seq * stride_tb + pos // BLOCK_SIZE, mask=valid, other=0)
        ptrs = (
            cache_ptr
            + page.to(tl.int64)[:, None] * stride_cb
            + (pos % BLOCK_SIZE)[:, None] * stride_ct
            + kv_head * stride_ch
            + dims[None, :]
        )
        k = tl.load(ptrs, mask=valid[:, None], other=0.0)
        v = tl.load(ptrs + stride_kv, mask=valid[:, None], other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # [ROWS, TILE]
        scores = (scores * scale).to(tl.float32)  # whatever precision `scale` arrives in
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    if NUM_SPLITS == 1:
        out = acc / tl.maximum(l_i, 1e-20)[:, None]
        tl.store(
            out_ptr + seq * stride_ob + heads[:, None] * stride_oh + dims[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=row_ok[:, None],
        )
    else:  # partial sums of this slice: merged by _merge_kernel
        part = (seq * tl.num_programs(1) * GROUP + heads) * NUM_SPLITS + split
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], acc, mask=row_ok[:, None])
        tl.store(part_ml_ptr + part * 2, m_i, mask=row_ok)
        tl.store(part_ml_ptr + part * 2 + 1, l_i, mask=row_ok)


@triton.jit
def _merge_kernel(
    part_acc_ptr,
    part_ml_ptr,
    out_ptr,
    stride_ob,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    ok = splits < NUM_SPLITS
    part = (seq * tl.num_programs(1) + head) * NUM_SPLITS + splits
    m = tl.load(part_ml_ptr + part * 2, mask=ok, other=float("-inf"))
    l_sum = tl.load(part_ml_ptr + part * 2 + 1, mask=ok, other=0.0)
    m_max = tl.max(m, axis=0)  # finite: every sequence has at least one key
    weight = tl.where(m > float("-inf"), tl.exp(m - m_max), 0.0)
    dims = tl.arange(0, HEAD_DIM)
    acc = tl.load(
        part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], mask=ok[:, None], other=0
    )
    out = tl.sum(acc * weight[:, None], axis=0) / tl.maximum(tl.sum(l_sum * weight, axis=0), 1e-20)
    tl.store(out_ptr + seq * stride_ob + head * stride_oh + dims, out.to(out_ptr.dtype.element_ty))


def paged_decode_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """q [B, Hq, D]; kv_cache [2, num_blocks, block_size, Hkv, D]; block_tables [B, max_blocks];
    seq_lens [B] (each >= 1) -> [B, Hq, D]. num_splits: context slices per sequence (default:
    enough programs to fill the GPU; depends only on shapes, so CUDA graphs can replay it)."""
    batch, num_heads, head_dim = q.shape
    _, _, block_size, num_kv_heads, _ = kv_cache.shape
    group = num_heads // num_kv_heads
    if q.stride(-1) != 1:
        q = q.contiguous()  # heads and tokens may be strided (views of a fused projection)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    max_len = block_tables.shape[1] * block_size
    if num_splits is None:
        num_splits = _default_splits(q.device, batch * num_kv_heads, max_len)
    split_len = triton.cdiv(triton.cdiv(max_len, num_splits), TILE) * TILE
    num_splits = max(triton.cdiv(max_len, split_len), 1)
    part_acc = part_ml = out  # unused with one split
    if num_splits > 1:
        part_acc = torch.empty(
            batch * num_heads * num_splits, head_dim, dtype=torch.float32, device=q.device
        )
        part_ml = torch.empty(
            batch * num_heads * num_splits, 2, dtype=torch.float32, device=q.device
        )
    window = sliding_window if sliding_window is not None else 1 << 30
    _decode_kernel[(batch, num_kv_heads, num_splits)](
        q,
        kv_cache,
        block_tables,
        seq_lens,
        out,
        part_acc,
        part_ml,
        scale,
        window,
        split_len,
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
        ROWS=max(triton.next_power_of_2(group), MIN_ROWS),
        TILE=TILE,
        NUM_SPLITS=num_splits,
        PRECISION=dot_precision(q.dtype),
    )
    if num_splits > 1:
        _merge_kernel[(batch, num_heads)](
            part_acc,
            part_ml,
            out,
            out.stride(0),
            out.stride(1),
            HEAD_DIM=head_dim,
            NUM_SPLITS=num_splits,
            SPLITS_PAD=max(triton.next_power_of_2(num_splits), 2),
        )
    return out


def _default_splits(device: torch.device, programs: int, max_len: int) -> int:
    """Slices so that programs * slices covers about two waves of the GPU's SMs."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(min(triton.cdiv(2 * sms, programs), triton.cdiv(max_len, TILE)), 1)


def dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs multiply in full precision (the default would round them to tf32)."""
    return "ieee" if dtype == torch.float32 else "tf32"
