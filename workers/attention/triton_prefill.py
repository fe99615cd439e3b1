"""Paged-attention kernel in Triton for steps with prefill chunks: every sequence's new
queries (a whole prompt, a chunk after cached context, or a single decode token) attend
causally to its context through the block table, all sequences in one launch.

Meaning in plain torch: `ReferenceAttention` without a prefill_fn (gather each sequence's
context, mask causally and by the sliding window, softmax, weight the values).

A program takes one KV head with all the query heads of its group and a tile of Q_TILE
queries of one sequence (its BLOCK_M rows are query x head pairs, workers.attention.tiles),
and walks its keys tile by tile with an online softmax (flash attention), stopping at the
tile's last query (causal) and starting at the window of its first. Packing the group's
heads into the rows loads each key once per KV head, and gives a decode (one query) GROUP
useful rows of its tile rather than one: mixed steps are mostly decodes.

`paged_prefill_attention_tiled` runs the same tiles on a grid fixed by the step's shape
(KV heads, max_tiles) and a device tile map, reading no host ints: what a CUDA graph of mixed
steps (prefill chunks with decodes) replays.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workers.attention.tiles import TILE_ROWS, tile_queries
from workers.attention.triton_decode import dot_precision

BLOCK_N = 64  # keys per inner iteration
PAST_ANY_QUERY = tl.constexpr(1 << 20)  # a tile index no sequence reaches (padding tiles)


@triton.jit
def _prefill_kernel(
    q_ptr,
    cache_ptr,
    tables_ptr,
    starts_ptr,
    lens_ptr,
    out_ptr,
    scale,
    window,
    stride_qt,
    stride_qh,
    stride_kv,
    stride_cb,
    stride_ct,
    stride_ch,
    stride_tb,
    stride_ot,
    stride_oh,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    Q_TILE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    _prefill_tile(
        q_ptr,
        cache_ptr,
        tables_ptr,
        starts_ptr,
        lens_ptr,
        out_ptr,
        scale,
        window,
        stride_qt,
        stride_qh,
        stride_kv,
        stride_cb,
        stride_ct,
        stride_ch,
        stride_tb,
        stride_ot,
        stride_oh,
        tl.program_id(0),  # the KV head, fastest: a sequence's KV heads run together
        tl.program_id(2),
        tl.program_id(1),
        BLOCK_SIZE,
        HEAD_DIM,
        GROUP,
        Q_TILE,
        BLOCK_M,
        BLOCK_N,
        PRECISION,
    )


@triton.jit
def _prefill_tiled_kernel(
    q_ptr,
    cache_ptr,
    tables_ptr,
    starts_ptr,
    lens_ptr,
    tile_seq_ptr,
    tile_index_ptr,
    out_ptr,
    scale,
    window,
    stride_qt,
    stride_qh,
    stride_kv,
    stride_cb,
    stride_ct,
    stride_ch,
    stride_tb,
    stride_ot,
    stride_oh,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    Q_TILE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid (KV heads, max_tiles): program j takes tile tile_index[j] of sequence
    tile_seq[j]; a padding entry (-1) reads sequence 0 past its queries, which loads and
    stores nothing."""
    kv_head = tl.program_id(0)
    pid = tl.program_id(1)
    seq = tl.load(tile_seq_ptr + pid)
    tile = tl.load(tile_index_ptr + pid)
    tile = tl.where(seq < 0, PAST_ANY_QUERY, tile)
    seq = tl.maximum(seq, 0)
    _prefill_tile(
        q_ptr,
        cache_ptr,
        tables_ptr,
        starts_ptr,
        lens_ptr,
        out_ptr,
        scale,
        window,
        stride_qt,
        stride_qh,
        stride_kv,
        stride_cb,
        stride_ct,
        stride_ch,
        stride_tb,
        stride_ot,
        stride_oh,
        kv_head,
        seq,
        tile,
        BLOCK_SIZE,
        HEAD_DIM,
        GROUP,
        Q_TILE,
        BLOCK_M,
        BLOCK_N,
        PRECISION,
    )


@triton.jit
def _prefill_tile(
    q_ptr,
    cache_ptr,
    tables_ptr,
    starts_ptr,
    lens_ptr,
    out_ptr,
    scale,
    window,
    stride_qt,
    stride_qh,
    stride_kv,
    stride_cb,
    stride_ct,
    stride_ch,
    stride_tb,
    stride_ot,
    stride_oh,
    kv_head,
    seq,
    tile,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    Q_TILE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """KV head `kv_head` with its GROUP query heads, queries tile * Q_TILE.. of sequence
    `seq` (none past its own): row r is query r // GROUP, head kv_head * GROUP + r % GROUP."""
    q_start = tl.load(starts_ptr + seq)
    num_queries = tl.load(starts_ptr + seq + 1) - q_start
    ctx = tl.load(lens_ptr + seq)
    rows = tl.arange(0, BLOCK_M)
    query = tile * Q_TILE + rows // GROUP
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < Q_TILE * GROUP) & (query < num_queries)
    q_pos = ctx - num_queries + query
    dims = tl.arange(0, HEAD_DIM)
    at = (q_start + query)[:, None] * stride_qt + head[:, None] * stride_qh + dims[None, :]
    q = tl.load(q_ptr + at, mask=row_ok[:, None], other=0.0)
    first_q = ctx - num_queries + tile * Q_TILE
    hi = tl.minimum(first_q + Q_TILE, ctx)  # keys past the tile's last query are masked
    hi = tl.where(tile * Q_TILE < num_queries, hi, 0)  # tiles past the queries do nothing
    lo = (tl.maximum(first_q - window + 1, 0) // BLOCK_N) * BLOCK_N
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    offs = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        k_pos = start + offs
        k_ok = k_pos < hi
        page = tl.load(tables_ptr + seq * stride_tb + k_pos // BLOCK_SIZE, mask=k_ok, other=0)
        ptrs = (
            cache_ptr
            + page.to(tl.int64)[:, None] * stride_cb
            + (k_pos % BLOCK_SIZE)[:, None] * stride_ct
            + kv_head * stride_ch
            + dims[None, :]
        )
        k = tl.load(ptrs, mask=k_ok[:, None], other=0.0)
        v = tl.load(ptrs + stride_kv, mask=k_ok[:, None], other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # [BLOCK_M, BLOCK_N]
        scores = (scores * scale).to(tl.float32)  # whatever precision `scale` arrives in
        seen = (
            k_ok[None, :]
            & (k_pos[None, :] <= q_pos[:, None])
            & (k_pos[None, :] > q_pos[:, None] - window)
        )
        scores = tl.where(seen, scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key seen yet
        p = tl.exp(scores - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / tl.maximum(l_i, 1e-20)[:, None]
    out_at = (q_start + query)[:, None] * stride_ot + head[:, None] * stride_oh + dims[None, :]
    tl.store(out_ptr + out_at, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


def paged_prefill_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    query_starts: torch.Tensor,
    seq_lens: torch.Tensor,
    max_query_len: int,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """q [T, Hq, D] (the step's new queries, sequence by sequence); kv_cache
    [2, num_blocks, block_size, Hkv, D] already holding the step's keys and values;
    block_tables [S, max_blocks]; query_starts [S + 1] offsets into q; seq_lens [S] context
    lengths after the step -> [T, Hq, D]."""
    q, out = _query_and_output(q)
    if q.shape[0] == 0:
        return out
    constants = _constants(q, kv_cache)
    grid = (kv_cache.shape[3], triton.cdiv(max_query_len, constants["Q_TILE"]), seq_lens.shape[0])
    _prefill_kernel[grid](
        q,
        kv_cache,
        block_tables,
        query_starts,
        seq_lens,
        *_layout_args(q, kv_cache, block_tables, out, scale, sliding_window),
        **constants,
    )
    return out


def paged_prefill_attention_tiled(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    query_starts: torch.Tensor,
    seq_lens: torch.Tensor,
    tile_seq: torch.Tensor,
    tile_index: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """paged_prefill_attention with a grid fixed by the shapes alone (CUDA-graph safe): one
    program per (KV head, entry of the tile map), tile_seq and tile_index [max_tiles]
    (workers.attention.tiles.tile_map, with tiles of tile_queries(group) queries). Rows of
    q that no sequence owns (padding past query_starts[-1]) are left unwritten."""
    q, out = _query_and_output(q)
    if q.shape[0] == 0 or tile_seq.shape[0] == 0:
        return out
    grid = (kv_cache.shape[3], tile_seq.shape[0])
    _prefill_tiled_kernel[grid](
        q,
        kv_cache,
        block_tables,
        query_starts,
        seq_lens,
        tile_seq,
        tile_index,
        *_layout_args(q, kv_cache, block_tables, out, scale, sliding_window),
        **_constants(q, kv_cache),
    )
    return out


def _query_and_output(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q with unit stride in its last dim (heads and tokens may be strided: views of a
    fused projection), and the output tensor both kernels write."""
    if q.stride(-1) != 1:
        q = q.contiguous()
    return q, torch.empty(q.shape, dtype=q.dtype, device=q.device)


def _layout_args(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    out: torch.Tensor,
    scale: float,
    sliding_window: int | None,
) -> tuple[object, ...]:
    """The kernels' arguments from `out` on: output, scale, window, then the strides."""
    window = sliding_window if sliding_window is not None else 1 << 30
    return (
        out,
        scale,
        window,
        q.stride(0),
        q.stride(1),
        kv_cache.stride(0),
        kv_cache.stride(1),
        kv_cache.stride(2),
        kv_cache.stride(3),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
    )


def _constants(q: torch.Tensor, kv_cache: torch.Tensor) -> dict[str, object]:
    """The kernels' compile-time constants."""
    num_heads, head_dim = q.shape[1], q.shape[2]
    group = num_heads // kv_cache.shape[3]
    return {
        "BLOCK_SIZE": kv_cache.shape[2],
        "HEAD_DIM": head_dim,
        "GROUP": group,
        "Q_TILE": tile_queries(group),
        "BLOCK_M": max(TILE_ROWS, triton.next_power_of_2(group)),
        "BLOCK_N": BLOCK_N,
        "PRECISION": dot_precision(q.dtype),
    }
