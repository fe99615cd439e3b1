"""The Triton paged-decode kernel against the plain-torch reference (GPU; or on CPU through
Triton's interpreter when TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import pytest
import torch

from workers.attention.reference import decode_attention_reference

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported
pytestmark = pytest.mark.gpu
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
from workers.attention.triton_decode import paged_decode_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("heads", "kv_heads", "window"), [(4, 2, None), (8, 8, None), (4, 1, 7), (32, 4, 70)]
)
@pytest.mark.parametrize("num_splits", [None, 1, 3])
def test_paged_decode_matches_reference(
    dtype: torch.dtype, heads: int, kv_heads: int, window: int | None, num_splits: int | None
) -> None:
    """One slice or several (merged), GQA groups above and below the 16-row tile."""
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the interpreter runs float32")
    g = torch.Generator().manual_seed(0)
    block_size, head_dim, num_blocks = 16, 64, 70
    cache = torch.randn(2, num_blocks, block_size, kv_heads, head_dim, generator=g).to(
        DEVICE, dtype
    )
    seq_lens = torch.tensor([1, 17, 64, 5, 190], device=DEVICE)
    perm = torch.randperm(num_blocks, generator=g).tolist()
    tables = torch.tensor([perm[i * 12 : i * 12 + 12] for i in range(5)], device=DEVICE)
    # q as the model passes it: a strided view into a wider fused projection
    fused = torch.randn(5, (heads + 2) * head_dim, generator=g).to(DEVICE, dtype)
    q = fused[:, : heads * head_dim].reshape(5, heads, head_dim)
    scale = head_dim**-0.5
    ours = paged_decode_attention(q, cache, tables, seq_lens, scale, window, num_splits)
    ref = decode_attention_reference(q.float(), cache.float(), tables, seq_lens, scale, window)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(ours.float(), ref, atol=tol, rtol=tol)
