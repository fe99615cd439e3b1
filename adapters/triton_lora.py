"""Batched LoRA for mixed-adapter batches in Triton, token-gathered: each token reads the A
and B matrices of its own slot, so one launch per projection serves every adapter (and the
base model, slot -1) with no host sync: safe inside a CUDA graph.

Meaning in plain torch: `adapters.ops.lora_delta_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _shrink_kernel(
    x_ptr,
    a_ptr,
    slots_ptr,
    y_ptr,
    in_features,
    stride_xt,
    stride_as,
    stride_ar,
    stride_yt,
    RANK: tl.constexpr,
    BLOCK_IN: tl.constexpr,
):
    token = tl.program_id(0)
    slot = tl.load(slots_ptr + token)
    ranks = tl.arange(0, RANK)
    acc = tl.full([RANK], 0.0, tl.float32)
    if slot >= 0:
        for start in range(0, in_features, BLOCK_IN):
            cols = start + tl.arange(0, BLOCK_IN)
            ok = cols < in_features
            x = tl.load(x_ptr + token * stride_xt + cols, mask=ok, other=0.0).to(tl.float32)
            a = tl.load(
                a_ptr + slot.to(tl.int64) * stride_as + ranks[:, None] * stride_ar + cols[None, :],
                mask=ok[None, :],
                other=0.0,
            ).to(tl.float32)
            acc += tl.sum(a * x[None, :], axis=1)
    tl.store(y_ptr + token * stride_yt + ranks, acc)


@triton.jit
def _expand_kernel(
    y_ptr,
    b_ptr,
    slots_ptr,
    out_ptr,
    out_features,
    stride_yt,
    stride_bs,
    stride_bo,
    stride_ot,
    RANK: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
):
    token = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    ok = rows < out_features
    slot = tl.load(slots_ptr + token)
    acc = tl.full([BLOCK_OUT], 0.0, tl.float32)
    if slot >= 0:
        ranks = tl.arange(0, RANK)
        y = tl.load(y_ptr + token * stride_yt + ranks)
        b = tl.load(
            b_ptr + slot.to(tl.int64) * stride_bs + rows[:, None] * stride_bo + ranks[None, :],
            mask=ok[:, None],
            other=0.0,
        ).to(tl.float32)
        acc = tl.sum(b * y[None, :], axis=1)
    tl.store(out_ptr + token * stride_ot + rows, acc.to(out_ptr.dtype.element_ty), mask=ok)


def lora_delta_gathered(
    x: torch.Tensor, a_stack: torch.Tensor, b_stack: torch.Tensor, token_slots: torch.Tensor
) -> torch.Tensor:
    """x [T, in]; a_stack [S, R, in]; b_stack [S, out, R]; token_slots [T] -> delta [T, out]
    with delta[t] = B[s] @ (A[s] @ x[t]) for s = token_slots[t], 0 where s == -1.
    R must be a power of two (>= 16): LoRASlots pads ranks to it."""
    tokens, in_features = x.shape
    _, rank, _ = a_stack.shape
    out_features = b_stack.shape[1]
    x = x.contiguous()
    shrunk = torch.empty(tokens, rank, dtype=torch.float32, device=x.device)
    delta = torch.empty(tokens, out_features, dtype=x.dtype, device=x.device)
    _shrink_kernel[(tokens,)](
        x,
        a_stack,
        token_slots,
        shrunk,
        in_features,
        x.stride(0),
        a_stack.stride(0),
        a_stack.stride(1),
        shrunk.stride(0),
        RANK=rank,
        BLOCK_IN=128,
    )
    block_out = 64
    _expand_kernel[(tokens, triton.cdiv(out_features, block_out))](
        shrunk,
        b_stack,
        token_slots,
        delta,
        out_features,
        shrunk.stride(0),
        b_stack.stride(0),
        b_stack.stride(1),
        delta.stride(0),
        RANK=rank,
        BLOCK_OUT=block_out,
    )
    return delta
