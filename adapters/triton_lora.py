"""Batched LoRA for mixed-adapter batches in Triton, token-gathered: each token reads the A
and B matrices of its own slot, so one launch per projection serves every adapter (and the
base model, slot -1) with no host sync: safe inside a CUDA graph.

Meaning in plain torch: `adapters.ops.lora_delta_reference`, added to the base projection.

A program takes a tile of consecutive tokens. Prefill chunks put one sequence's tokens (one
adapter) side by side, so a tile whose tokens share a slot multiplies as a whole (tensor
cores, each A and B tile read once for the tile); a tile that mixes slots (decodes of
different requests) goes token by token. Decode-sized steps use tiles of one token, for
parallelism.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_WIDE = tl.constexpr(1 << 30)


@triton.jit
def _tile_slot(slots_ptr, rows, row_ok):
    """The slot all valid rows of the tile share, or -2 when they differ."""
    slots = tl.load(slots_ptr + rows, mask=row_ok, other=-1)
    lo = tl.min(tl.where(row_ok, slots, _WIDE), axis=0)
    hi = tl.max(tl.where(row_ok, slots, -_WIDE), axis=0)
    return tl.where(lo == hi, lo, -2)


@triton.jit
def _shrink_kernel(
    x_ptr,
    a_ptr,
    slots_ptr,
    y_ptr,
    tokens,
    in_features,
    stride_xt,
    stride_as,
    stride_ar,
    stride_yt,
    RANK: tl.constexpr,
    BLOCK_IN: tl.constexpr,
    BLOCK_T: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < tokens
    ranks = tl.arange(0, RANK)
    if BLOCK_T >= 16:
        shared = _tile_slot(slots_ptr, rows, row_ok)
        if shared >= 0:  # one adapter: [BLOCK_T, in] @ [in, RANK]
            acc = tl.zeros([BLOCK_T, RANK], tl.float32)
            a_base = a_ptr + shared.to(tl.int64) * stride_as + ranks[None, :] * stride_ar
            for start in range(0, in_features, BLOCK_IN):
                cols = start + tl.arange(0, BLOCK_IN)
                ok = cols < in_features
                x = tl.load(
                    x_ptr + rows[:, None] * stride_xt + cols[None, :],
                    mask=row_ok[:, None] & ok[None, :],
                    other=0.0,
                )
                a = tl.load(a_base + cols[:, None], mask=ok[:, None], other=0.0)
                acc += tl.dot(x, a, input_precision=PRECISION)
            tl.store(y_ptr + rows[:, None] * stride_yt + ranks[None, :], acc, mask=row_ok[:, None])
        else:
            _shrink_tokens(
                x_ptr,
                a_ptr,
                slots_ptr,
                y_ptr,
                tokens,
                in_features,
                stride_xt,
                stride_as,
                stride_ar,
                stride_yt,
                RANK,
                BLOCK_IN,
                BLOCK_T,
            )
    else:
        _shrink_tokens(
            x_ptr,
            a_ptr,
            slots_ptr,
            y_ptr,
            tokens,
            in_features,
            stride_xt,
            stride_as,
            stride_ar,
            stride_yt,
            RANK,
            BLOCK_IN,
            BLOCK_T,
        )


@triton.jit
def _shrink_tokens(
    x_ptr,
    a_ptr,
    slots_ptr,
    y_ptr,
    tokens,
    in_features,
    stride_xt,
    stride_as,
    stride_ar,
    stride_yt,
    RANK: tl.constexpr,
    BLOCK_IN: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """The tile token by token, each with its own slot."""
    ranks = tl.arange(0, RANK)
    for t in range(BLOCK_T):
        token = tl.program_id(0) * BLOCK_T + t
        if token < tokens:
            slot = tl.load(slots_ptr + token)
            acc = tl.zeros([RANK], tl.float32)
            if slot >= 0:
                a_base = a_ptr + slot.to(tl.int64) * stride_as + ranks[:, None] * stride_ar
                for start in range(0, in_features, BLOCK_IN):
                    cols = start + tl.arange(0, BLOCK_IN)
                    ok = cols < in_features
                    x = tl.load(x_ptr + token * stride_xt + cols, mask=ok, other=0.0)
                    a = tl.load(a_base + cols[None, :], mask=ok[None, :], other=0.0)
                    acc += tl.sum(a.to(tl.float32) * x.to(tl.float32)[None, :], axis=1)
            tl.store(y_ptr + token * stride_yt + ranks, acc)


@triton.jit
def _expand_add_kernel(
    y_ptr,
    b_ptr,
    slots_ptr,
    out_ptr,
    tokens,
    out_features,
    stride_yt,
    stride_bs,
    stride_bo,
    stride_ot,
    RANK: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    row_ok = rows < tokens
    col_ok = cols < out_features
    ranks = tl.arange(0, RANK)
    if BLOCK_T >= 16:
        shared = _tile_slot(slots_ptr, rows, row_ok)
        if shared >= 0:  # one adapter: [BLOCK_T, RANK] @ [RANK, BLOCK_OUT]
            b = tl.load(
                b_ptr
                + shared.to(tl.int64) * stride_bs
                + cols[None, :] * stride_bo
                + ranks[:, None],
                mask=col_ok[None, :],
                other=0.0,
            )
            y = tl.load(y_ptr + rows[:, None] * stride_yt + ranks[None, :], mask=row_ok[:, None])
            delta = tl.dot(y.to(b.dtype), b, input_precision=PRECISION)
            ptrs = out_ptr + rows[:, None] * stride_ot + cols[None, :]
            mask = row_ok[:, None] & col_ok[None, :]
            base = tl.load(ptrs, mask=mask, other=0.0)
            tl.store(ptrs, (base.to(tl.float32) + delta).to(base.dtype), mask=mask)
        else:
            _expand_tokens(
                y_ptr,
                b_ptr,
                slots_ptr,
                out_ptr,
                tokens,
                cols,
                col_ok,
                stride_yt,
                stride_bs,
                stride_bo,
                stride_ot,
                RANK,
                BLOCK_T,
            )
    else:
        _expand_tokens(
            y_ptr,
            b_ptr,
            slots_ptr,
            out_ptr,
            tokens,
            cols,
            col_ok,
            stride_yt,
            stride_bs,
            stride_bo,
            stride_ot,
            RANK,
            BLOCK_T,
        )


@triton.jit
def _expand_tokens(
    y_ptr,
    b_ptr,
    slots_ptr,
    out_ptr,
    tokens,
    cols,
    col_ok,
    stride_yt,
    stride_bs,
    stride_bo,
    stride_ot,
    RANK: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """The tile token by token, each with its own slot."""
    ranks = tl.arange(0, RANK)
    for t in range(BLOCK_T):
        token = tl.program_id(0) * BLOCK_T + t
        if token < tokens:
            slot = tl.load(slots_ptr + token)
            if slot >= 0:
                y = tl.load(y_ptr + token * stride_yt + ranks)
                b = tl.load(
                    b_ptr
                    + slot.to(tl.int64) * stride_bs
                    + cols[:, None] * stride_bo
                    + ranks[None, :],
                    mask=col_ok[:, None],
                    other=0.0,
                ).to(tl.float32)
                delta = tl.sum(b * y[None, :], axis=1)
                ptrs = out_ptr + token * stride_ot + cols
                base = tl.load(ptrs, mask=col_ok, other=0.0)
                tl.store(ptrs, (base.to(tl.float32) + delta).to(base.dtype), mask=col_ok)


def lora_add_gathered(
    x: torch.Tensor,
    a_stack: torch.Tensor,
    b_stack: torch.Tensor,
    token_slots: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """out[t] += B[s] @ (A[s] @ x[t]) for s = token_slots[t] (nothing where s == -1), in
    place; returns out. x [T, in]; a_stack [S, R, in]; b_stack [S, out, R]; out [T, out]
    (rows may be strided, columns contiguous). R must be a power of two (>= 16): LoRASlots
    pads ranks to it."""
    tokens, in_features = x.shape
    _, rank, _ = a_stack.shape
    out_features = b_stack.shape[1]
    assert out.stride(1) == 1
    x = x.contiguous()
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    tile = 1 if tokens <= 256 else 32  # decode-sized steps: parallel over tokens
    shrunk = torch.empty(tokens, rank, dtype=torch.float32, device=x.device)
    _shrink_kernel[(triton.cdiv(tokens, tile),)](
        x,
        a_stack,
        token_slots,
        shrunk,
        tokens,
        in_features,
        x.stride(0),
        a_stack.stride(0),
        a_stack.stride(1),
        shrunk.stride(0),
        RANK=rank,
        BLOCK_IN=128 if tile > 1 else 256,
        BLOCK_T=tile,
        PRECISION=precision,
    )
    block_out = 64
    _expand_add_kernel[(triton.cdiv(tokens, tile), triton.cdiv(out_features, block_out))](
        shrunk,
        b_stack,
        token_slots,
        out,
        tokens,
        out_features,
        shrunk.stride(0),
        b_stack.stride(0),
        b_stack.stride(1),
        out.stride(0),
        RANK=rank,
        BLOCK_OUT=block_out,
        BLOCK_T=tile,
        PRECISION=precision,
    )
    return out


def lora_delta_gathered(
    x: torch.Tensor, a_stack: torch.Tensor, b_stack: torch.Tensor, token_slots: torch.Tensor
) -> torch.Tensor:
    """The update alone: delta [T, out] (what lora_add_gathered adds)."""
    out = torch.zeros(x.shape[0], b_stack.shape[1], dtype=x.dtype, device=x.device)
    return lora_add_gathered(x, a_stack, b_stack, token_slots, out)
