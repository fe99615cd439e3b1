"""Fused Triton norm and rotary kernels against the plain-torch modules they replace on CUDA
(GPU; or on CPU through Triton's interpreter when TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import pytest
import torch

from workers.models.llama import RMSNorm
from workers.models.model_config import RopeScaling
from workers.models.rope import RotaryEmbedding, cos_sin_table

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported
pytestmark = pytest.mark.gpu
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
from workers.models.triton_ops import rms_norm, rotary_, silu_mul  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16] if DEVICE == "cuda" else [torch.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 100])
def test_rms_norm_matches_module(dtype: torch.dtype, hidden: int) -> None:
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(hidden, 1e-5)
    norm.weight.data = torch.randn(hidden, generator=g)
    norm = norm.to(dtype)
    x = torch.randn(7, hidden, generator=g).to(dtype)
    residual = torch.randn(7, hidden, generator=g).to(dtype)
    summed = x + residual
    expected = norm(summed)  # the CPU path
    weight = norm.weight.to(DEVICE)
    out, res = rms_norm(x.to(DEVICE), weight, 1e-5, residual.to(DEVICE))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(res.cpu(), summed, atol=0, rtol=0)
    torch.testing.assert_close(out.cpu(), expected, atol=tol, rtol=tol)
    plain, _ = rms_norm(x.to(DEVICE), weight, 1e-5)
    torch.testing.assert_close(plain.cpu(), norm(x), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_matches_module(dtype: torch.dtype) -> None:
    """In place on q and k taken as views of one fused projection, as the model does."""
    g = torch.Generator().manual_seed(0)
    head_dim, heads, kv_heads, tokens = 32, 6, 2, 9
    rope = RotaryEmbedding(head_dim, 10000.0, RopeScaling())
    positions = torch.randint(0, 200, (tokens,), generator=g)
    fused = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=g).to(dtype)
    q = fused[:, : heads * head_dim].reshape(tokens, heads, head_dim)
    k = fused[:, heads * head_dim : (heads + kv_heads) * head_dim].reshape(tokens, kv_heads, -1)
    expected_q, expected_k = rope(positions, q, k)  # the CPU path
    table = cos_sin_table(256, rope.inv_freq).to(DEVICE)
    on_device = fused.to(DEVICE)
    dq = on_device[:, : heads * head_dim].reshape(tokens, heads, head_dim)
    dk = on_device[:, heads * head_dim : (heads + kv_heads) * head_dim].reshape(
        tokens, kv_heads, -1
    )
    rotary_(positions.to(DEVICE), dq, table)
    rotary_(positions.to(DEVICE), dk, table)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(dq.cpu(), expected_q, atol=tol, rtol=tol)
    torch.testing.assert_close(dk.cpu(), expected_k, atol=tol, rtol=tol)
    v = on_device[:, (heads + kv_heads) * head_dim :]
    torch.testing.assert_close(v.cpu(), fused[:, (heads + kv_heads) * head_dim :])  # untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_matches_torch(dtype: torch.dtype) -> None:
    """On the two halves of a fused gate/up projection (strided rows)."""
    g = torch.Generator().manual_seed(0)
    fused = (3 * torch.randn(5, 2 * 1500, generator=g)).to(dtype)
    gate, up = fused.to(DEVICE).split(1500, dim=-1)
    expected = torch.nn.functional.silu(fused[:, :1500]) * fused[:, 1500:]
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(silu_mul(gate, up).cpu(), expected, atol=tol, rtol=tol)
