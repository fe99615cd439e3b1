"""The tile map of the graph-capturable prefill kernel: which sequence, and which tile of
its queries, each program of a fixed-size grid takes (numpy on the host; no triton).

A program takes one KV head with every query head of its group, so a tile's rows are
(query, head) pairs: TILE_ROWS of them, `tile_queries(group)` queries. A decode (one query)
then fills `group` rows of its tile instead of one, and loads its keys once per KV head."""

from __future__ import annotations

import numpy as np

TILE_ROWS = 64  # rows of one prefill program: its queries x the query heads of a KV head


def tile_queries(group: int) -> int:
    """Queries per tile for `group` query heads per KV head (at least one)."""
    return max(1, TILE_ROWS // group)


def max_tiles(num_tokens: int, num_seqs: int, queries_per_tile: int) -> int:
    """An upper bound of sum_i cdiv(q_i, queries_per_tile) over num_seqs query counts
    summing to at most num_tokens: each sequence adds at most one partial tile."""
    return num_tokens // queries_per_tile + num_seqs


def tile_map(
    query_lens: np.ndarray, num_tiles: int, queries_per_tile: int
) -> tuple[np.ndarray, np.ndarray]:
    """(tile_seq, tile_index), each [num_tiles] int64: entry j is tile tile_index[j] of
    sequence tile_seq[j]; entries past the step's tiles are -1 (padding: nothing to do).
    Sequences with no queries take no tile."""
    lens = np.asarray(query_lens, dtype=np.int64)
    per_seq = -(-lens // queries_per_tile)
    total = int(per_seq.sum())
    if total > num_tiles:
        raise ValueError(f"{total} tiles do not fit a grid of {num_tiles}")
    tile_seq = np.full(num_tiles, -1, dtype=np.int64)
    tile_index = np.full(num_tiles, -1, dtype=np.int64)
    tile_seq[:total] = np.repeat(np.arange(len(lens), dtype=np.int64), per_seq)
    first = np.cumsum(per_seq) - per_seq
    tile_index[:total] = np.arange(total, dtype=np.int64) - np.repeat(first, per_seq)
    return tile_seq, tile_index
