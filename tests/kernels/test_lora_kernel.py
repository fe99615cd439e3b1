"""The token-gathered Triton LoRA kernel against the plain-torch reference (GPU; or on CPU
through Triton's interpreter when TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import pytest
import torch

from adapters.ops import lora_delta_reference

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported
pytestmark = pytest.mark.gpu
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
from adapters.triton_lora import lora_add_gathered, lora_delta_gathered  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize(("in_features", "out_features"), [(64, 96), (200, 130)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gathered_lora_matches_reference(
    in_features: int, out_features: int, dtype: torch.dtype
) -> None:
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the interpreter runs float32")
    g = torch.Generator().manual_seed(0)
    slots, rank, tokens = 5, 16, 11
    x = torch.randn(tokens, in_features, generator=g).to(DEVICE, dtype)
    a = torch.randn(slots, rank, in_features, generator=g).to(DEVICE, dtype)
    b = torch.randn(slots, out_features, rank, generator=g).to(DEVICE, dtype)
    token_slots = torch.tensor([0, -1, 4, 4, 2, -1, 1, 0, 3, 3, -1], device=DEVICE)
    ours = lora_delta_gathered(x, a, b, token_slots)
    ref = lora_delta_reference(x.float(), a.float(), b.float(), token_slots)
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(ours.float(), ref, atol=tol * ref.abs().max().item(), rtol=tol)
    assert ours[1].abs().max() == 0  # base-model tokens get no update


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiled_lora_adds_in_place_like_the_reference(dtype: torch.dtype) -> None:
    """A prefill-sized step (tiles of 32 tokens): runs of one adapter (whole tiles multiply at
    once), base tokens, and tiles that mix slots; the update lands on a strided view."""
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the interpreter runs float32")
    g = torch.Generator().manual_seed(1)
    slots, rank, in_features, out_features = 4, 16, 96, 80
    runs = [(2, 70), (-1, 40), (0, 33), (3, 1), (1, 1), (-1, 2), (1, 130)]
    token_slots = torch.tensor([s for s, n in runs for _ in range(n)], device=DEVICE)
    tokens = token_slots.numel()
    x = torch.randn(tokens, in_features, generator=g).to(DEVICE, dtype)
    a = torch.randn(slots, rank, in_features, generator=g).to(DEVICE, dtype)
    b = torch.randn(slots, out_features, rank, generator=g).to(DEVICE, dtype)
    fused = torch.randn(tokens, out_features + 8, generator=g).to(DEVICE, dtype)
    base = fused[:, :out_features]  # a view with a row stride, as a fused projection gives
    expected = base.float() + lora_delta_reference(x.float(), a.float(), b.float(), token_slots)
    result = lora_add_gathered(x, a, b, token_slots, base)
    assert result.data_ptr() == base.data_ptr()
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(
        base.float(), expected, atol=tol * expected.abs().max().item(), rtol=tol
    )
