"""Writing a step's keys and values into the paged cache: one Triton kernel for both, reading
k and v where the fused projection left them (strided views).

Meaning in plain torch: `workers.attention.reference.write_kv`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _write_kv_kernel(
    k_ptr,
    v_ptr,
    cache_ptr,
    slots_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_kv,
    stride_slot,
    stride_ch,
    HEADS: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    token = tl.program_id(0)
    slot = tl.load(slots_ptr + token).to(tl.int64)
    heads = tl.arange(0, HEADS_PAD)
    dims = tl.arange(0, HEAD_DIM)
    ok = (heads < HEADS)[:, None]
    k = tl.load(k_ptr + token * stride_kt + heads[:, None] * stride_kh + dims[None, :], mask=ok)
    v = tl.load(v_ptr + token * stride_vt + heads[:, None] * stride_vh + dims[None, :], mask=ok)
    dst = cache_ptr + slot * stride_slot + heads[:, None] * stride_ch + dims[None, :]
    tl.store(dst, k.to(cache_ptr.dtype.element_ty), mask=ok)
    tl.store(dst + stride_kv, v.to(cache_ptr.dtype.element_ty), mask=ok)


def write_kv_paged(
    k: torch.Tensor, v: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """kv_cache[0].flatten(0, 1)[slot_mapping] = k, and the same for v, in one launch.
    k, v [T, Hkv, D] (last dim contiguous); kv_cache [2, num_blocks, block_size, Hkv, D]."""
    tokens, heads, head_dim = k.shape
    assert kv_cache.is_contiguous() and k.stride(2) == 1 and v.stride(2) == 1
    if tokens:
        _write_kv_kernel[(tokens,)](
            k,
            v,
            kv_cache,
            slot_mapping,
            k.stride(0),
            k.stride(1),
            v.stride(0),
            v.stride(1),
            kv_cache.stride(0),
            kv_cache.stride(2),
            kv_cache.stride(3),
            HEADS=heads,
            HEADS_PAD=triton.next_power_of_2(heads),
            HEAD_DIM=head_dim,
        )
