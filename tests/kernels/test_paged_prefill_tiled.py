"""The graph-capturable (tiled) paged-prefill kernel against the plain-torch reference and
the per-sequence-grid kernel: mixed steps with padding sequences of no queries and padding
rows no sequence owns (GPU; or on CPU through Triton's interpreter when TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from workers.attention.tiles import TILE_ROWS, max_tiles, tile_map, tile_queries

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported


@pytest.mark.parametrize("per_tile", [64, 8, 1])
def test_tile_map_covers_every_query_once(per_tile: int) -> None:
    lens = np.array([70, 0, 1, 128, 129, 0, 64])
    num_tiles = max_tiles(int(lens.sum()) + 30, len(lens) + 2, per_tile)
    tile_seq, tile_index = tile_map(lens, num_tiles, per_tile)
    assert tile_seq.shape == tile_index.shape == (num_tiles,)
    real = tile_seq >= 0
    pairs = list(zip(tile_seq[real].tolist(), tile_index[real].tolist(), strict=True))
    expected = [(i, t) for i, n in enumerate(lens.tolist()) for t in range(-(-n // per_tile))]
    assert pairs == expected
    assert (tile_index[~real] == -1).all() and not real[len(pairs) :].any()


@pytest.mark.parametrize("seed", range(20))
def test_max_tiles_bounds_any_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_seqs = int(rng.integers(1, 12))
    lens = rng.integers(0, 300, num_seqs)
    per_tile = int(rng.choice([1, 4, 8, 16, 64]))
    bound = max_tiles(int(lens.sum()), num_seqs, per_tile)
    assert int((-(-lens // per_tile)).sum()) <= bound
    tile_map(lens, bound, per_tile)  # fits


def test_tile_queries_packs_a_kv_heads_group() -> None:
    assert [tile_queries(g) for g in (1, 2, 8, 6, 64, 128)] == [TILE_ROWS, 32, 8, 10, 1, 1]


def test_tile_map_refuses_too_small_grid() -> None:
    with pytest.raises(ValueError):
        tile_map(np.array([65, 1]), 2, 64)


if torch.cuda.is_available() or INTERPRET:
    from tests.kernels.test_paged_prefill import mixed_step
    from workers.attention.metadata import AttentionMetadata
    from workers.attention.reference import ReferenceAttention
    from workers.attention.triton_kv import write_kv_paged
    from workers.attention.triton_prefill import (
        paged_prefill_attention,
        paged_prefill_attention_tiled,
    )

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() or INTERPRET), reason="needs CUDA (or TRITON_INTERPRET=1)"
)

CASES = {
    # prompt, chunk after cached context, decodes, long prompt, two padding sequences
    "mixed": ([70, 40, 1, 130, 1, 0, 0], [70, 150, 33, 130, 1, 1, 1]),
    # decodes around one prompt, a padding sequence first
    "decodes": ([0, 1, 1, 128, 1, 1], [1, 9, 300, 128, 17, 64]),
    # chunks of exactly one tile and one row more, after long cached contexts
    "chunks": ([64, 65, 3], [200, 300, 67]),
}


def tiled_meta(
    meta: AttentionMetadata, pad_rows: int, pad_seqs: int, group: int
) -> AttentionMetadata:
    """meta with a tile map sized for its tokens plus pad_rows and pad_seqs more, in tiles
    for `group` query heads per KV head."""
    starts = np.array(meta.query_start_loc)
    tokens, seqs = int(starts[-1]) + pad_rows, meta.num_seqs + pad_seqs
    per_tile = tile_queries(group)
    tile_seq, tile_index = tile_map(np.diff(starts), max_tiles(tokens, seqs, per_tile), per_tile)
    return AttentionMetadata(
        slot_mapping=meta.slot_mapping,
        block_tables=meta.block_tables,
        query_start_loc=meta.query_start_loc,
        seq_lens=meta.seq_lens,
        block_size=meta.block_size,
        seq_lens_tensor=meta.seq_lens_tensor,
        query_start_tensor=meta.query_start_tensor,
        tile_seq=torch.from_numpy(tile_seq).to(DEVICE),
        tile_index=torch.from_numpy(tile_index).to(DEVICE),
    )


@needs_kernels
@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
# Groups of 2, 4, 1 (one head per KV head: whole-query tiles), 8 and 6 (tiles of 10
# queries, 60 of the 64 rows).
@pytest.mark.parametrize(
    ("heads", "kv_heads", "window"),
    [(4, 2, None), (8, 2, 37), (4, 4, None), (16, 2, None), (6, 1, 37)],
)
def test_tiled_prefill_matches_reference_and_kernel(
    case: str, heads: int, kv_heads: int, window: int | None
) -> None:
    query_lens, context_lens = CASES[case]
    block_size, head_dim, num_blocks = 16, 32, 120
    meta = mixed_step(query_lens, context_lens, block_size, num_blocks)
    pad_rows = 23  # rows past the last sequence's queries: owned by none, left unwritten
    tiled = tiled_meta(meta, pad_rows, pad_seqs=3, group=heads // kv_heads)
    assert tiled.tile_seq is not None and tiled.tile_index is not None
    assert tiled.query_start_tensor is not None and tiled.seq_lens_tensor is not None
    assert meta.query_start_tensor is not None and meta.seq_lens_tensor is not None
    g = torch.Generator().manual_seed(0)
    tokens = sum(query_lens)
    fused = torch.randn(tokens + pad_rows, (heads + 1) * head_dim, generator=g).to(DEVICE)
    q = fused[:, : heads * head_dim].reshape(tokens + pad_rows, heads, head_dim)  # strided
    k = torch.randn(tokens, kv_heads, head_dim, generator=g).to(DEVICE)
    v = torch.randn(tokens, kv_heads, head_dim, generator=g).to(DEVICE)
    cache = torch.randn(2, num_blocks, block_size, kv_heads, head_dim, generator=g).to(DEVICE)
    scale = head_dim**-0.5
    write_kv_paged(k, v, cache, meta.slot_mapping)
    ref = ReferenceAttention(scale, window)(q[:tokens], k, v, cache.clone(), meta)
    per_seq = paged_prefill_attention(
        q[:tokens],
        cache,
        meta.block_tables,
        meta.query_start_tensor,
        meta.seq_lens_tensor,
        meta.max_query_len,
        scale,
        window,
    )
    ours = paged_prefill_attention_tiled(
        q,
        cache,
        tiled.block_tables,
        tiled.query_start_tensor,
        tiled.seq_lens_tensor,
        tiled.tile_seq,
        tiled.tile_index,
        scale,
        window,
    )
    assert ours.shape == q.shape
    torch.testing.assert_close(ours[:tokens], ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[:tokens], per_seq, atol=1e-5, rtol=1e-5)


@needs_kernels
@pytest.mark.gpu
def test_reference_attention_dispatches_to_tiled_kernel() -> None:
    """With a tile map in the metadata, ReferenceAttention runs the tiled kernel (given
    one) and never the per-sequence grid (which reads host ints)."""
    query_lens, context_lens = CASES["mixed"]
    meta = mixed_step(query_lens, context_lens, 16, 120)
    tiled = tiled_meta(meta, 0, 0, group=2)
    g = torch.Generator().manual_seed(2)
    tokens = sum(query_lens)
    q = torch.randn(tokens, 4, 32, generator=g).to(DEVICE)
    k = torch.randn(tokens, 2, 32, generator=g).to(DEVICE)
    v = torch.randn(tokens, 2, 32, generator=g).to(DEVICE)
    cache = torch.randn(2, 120, 16, 2, 32, generator=g).to(DEVICE)

    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the per-sequence kernel ran")

    ours = ReferenceAttention(
        0.2,
        prefill_fn=refuse,
        write_fn=write_kv_paged,
        tiled_fn=paged_prefill_attention_tiled,
    )(q, k, v, cache.clone(), tiled)
    ref = ReferenceAttention(0.2)(q, k, v, cache.clone(), meta)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
