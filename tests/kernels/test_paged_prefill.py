"""The Triton paged-prefill kernel against the plain-torch reference on mixed steps: whole
prompts, chunks after cached context, single decode tokens, sliding windows (GPU; or on CPU
through Triton's interpreter when TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import pytest
import torch

from workers.attention.metadata import AttentionMetadata
from workers.attention.reference import ReferenceAttention

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported
pytestmark = pytest.mark.gpu
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
from workers.attention.triton_kv import write_kv_paged  # noqa: E402
from workers.attention.triton_prefill import paged_prefill_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def mixed_step(
    query_lens: list[int], context_lens: list[int], block_size: int, num_blocks: int
) -> AttentionMetadata:
    """Sequence i computes its last query_lens[i] tokens of context_lens[i], on random blocks."""
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(num_blocks, generator=g).tolist()
    width = max(-(-c // block_size) for c in context_lens)
    tables = [perm[i * width : (i + 1) * width] for i in range(len(context_lens))]
    starts, slots = [0], []
    for table, q_len, ctx in zip(tables, query_lens, context_lens, strict=True):
        starts.append(starts[-1] + q_len)
        slots += [
            table[p // block_size] * block_size + p % block_size for p in range(ctx - q_len, ctx)
        ]

    def tensor(values: list[int] | list[list[int]]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=DEVICE)

    return AttentionMetadata(
        slot_mapping=tensor(slots),
        block_tables=tensor(tables),
        query_start_loc=tuple(starts),
        seq_lens=tuple(context_lens),
        block_size=block_size,
        seq_lens_tensor=tensor(context_lens),
        query_start_tensor=tensor(starts),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "window"), [(4, 2, None), (4, 4, None), (8, 2, 37)])
def test_paged_prefill_matches_reference(
    dtype: torch.dtype, heads: int, kv_heads: int, window: int | None
) -> None:
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the interpreter runs float32")
    block_size, head_dim, num_blocks = 16, 64, 80
    query_lens = [70, 40, 1, 130, 1]  # prompt, chunk after context, decodes, long prompt
    context_lens = [70, 150, 33, 130, 1]
    meta = mixed_step(query_lens, context_lens, block_size, num_blocks)
    g = torch.Generator().manual_seed(0)
    tokens = sum(query_lens)
    fused = torch.randn(tokens, (heads + 1) * head_dim, generator=g).to(DEVICE, dtype)
    q = fused[:, : heads * head_dim].reshape(tokens, heads, head_dim)  # strided, as in the model
    kv = torch.randn(tokens, 2 * kv_heads + 1, head_dim, generator=g).to(DEVICE, dtype)
    k, v = kv[:, :kv_heads], kv[:, kv_heads : 2 * kv_heads]  # strided, as in the model
    cache = torch.randn(2, num_blocks, block_size, kv_heads, head_dim, generator=g).to(
        DEVICE, dtype
    )
    scale = head_dim**-0.5
    reference = ReferenceAttention(scale, window)
    kernel = ReferenceAttention(
        scale, window, prefill_fn=paged_prefill_attention, write_fn=write_kv_paged
    )
    ref_cache, our_cache = cache.float(), cache.clone()
    ref = reference(q.float(), k.float(), v.float(), ref_cache, meta)
    ours = kernel(q, k, v, our_cache, meta)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(ours.float(), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(our_cache.float(), ref_cache, atol=tol, rtol=tol)
