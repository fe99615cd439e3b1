"""Fused Triton kernels for the small element-wise work between the matmuls of a layer, which
otherwise costs a dozen kernel launches per norm and per rotary embedding.

Each matches its plain-torch counterpart in workers/models (`RMSNorm`, `RotaryEmbedding`),
rounding where that rounds: the residual sum and the normalized vector to the activation
dtype, rotary math in float32 rounded once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    res_out_ptr,
    stride_x,
    stride_r,
    stride_o,
    stride_ro,
    n,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    ok = cols < n
    dtype = out_ptr.dtype.element_ty
    x = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + cols, mask=ok, other=0.0).to(tl.float32)
        x = (x + r).to(dtype)  # the residual stream, as the unfused add rounds it
        tl.store(res_out_ptr + row * stride_ro + cols, x, mask=ok)
        x = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n + eps)
    normed = (x * rstd).to(dtype).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, (normed * w).to(dtype), mask=ok)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, H] (plus residual [T, H] first, when given) -> (weight * normalized, the sum
    that was normalized), both in x's dtype."""
    tokens, hidden = x.shape
    out = torch.empty_like(x)
    res_out = torch.empty_like(x) if residual is not None else x
    res_in = residual if residual is not None else x
    if tokens:
        _rms_norm_kernel[(tokens,)](
            x,
            res_in,
            weight,
            out,
            res_out,
            x.stride(0),
            res_in.stride(0),
            out.stride(0),
            res_out.stride(0),
            hidden,
            eps,
            HAS_RESIDUAL=residual is not None,
            BLOCK=triton.next_power_of_2(hidden),
        )
    return out, res_out


@triton.jit
def _rotary_kernel(
    x_ptr,
    table_ptr,
    pos_ptr,
    stride_xt,
    stride_xh,
    stride_tp,
    stride_tc,
    HEADS: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    HALF: tl.constexpr,
):
    token = tl.program_id(0)
    pos = tl.load(pos_ptr + token)
    dims = tl.arange(0, HALF)
    cos = tl.load(table_ptr + pos * stride_tp + dims)[None, :]
    sin = tl.load(table_ptr + pos * stride_tp + stride_tc + dims)[None, :]
    heads = tl.arange(0, HEADS_PAD)
    ok = (heads < HEADS)[:, None]
    first = x_ptr + token * stride_xt + heads[:, None] * stride_xh + dims[None, :]
    x1 = tl.load(first, mask=ok, other=0.0)
    x2 = tl.load(first + HALF, mask=ok, other=0.0)
    a, b = x1.to(tl.float32), x2.to(tl.float32)
    tl.store(first, (a * cos - b * sin).to(x1.dtype), mask=ok)
    tl.store(first + HALF, (b * cos + a * sin).to(x1.dtype), mask=ok)


def rotary_(positions: torch.Tensor, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate x [T, H, D] in place ("rotate half" layout) at positions [T]; table
    [max_positions, 2, D] float32 holds cos and sin of every angle. Returns x."""
    tokens, heads, head_dim = x.shape
    assert x.stride(2) == 1
    if tokens:
        _rotary_kernel[(tokens,)](
            x,
            table,
            positions,
            x.stride(0),
            x.stride(1),
            table.stride(0),
            table.stride(1),
            HEADS=heads,
            HEADS_PAD=triton.next_power_of_2(heads),
            HALF=head_dim // 2,
        )
    return x


@triton.jit
def _silu_mul_kernel(
    gate_ptr, up_ptr, out_ptr, width, stride_g, stride_u, stride_o, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < width
    dtype = out_ptr.dtype.element_ty
    g = tl.load(gate_ptr + row * stride_g + cols, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + row * stride_u + cols, mask=ok, other=0.0).to(tl.float32)
    act = (g * tl.sigmoid(g)).to(dtype).to(tl.float32)  # rounded, as the unfused silu is
    tl.store(out_ptr + row * stride_o + cols, (act * u).to(dtype), mask=ok)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for [T, I] inputs (rows may be strided: halves of a fused projection)."""
    tokens, width = gate.shape
    assert gate.stride(1) == 1 and up.stride(1) == 1
    out = torch.empty(tokens, width, dtype=gate.dtype, device=gate.device)
    block = 1024
    if tokens:
        _silu_mul_kernel[(tokens, triton.cdiv(width, block))](
            gate, up, out, width, gate.stride(0), up.stride(0), out.stride(0), BLOCK=block
        )
    return out
