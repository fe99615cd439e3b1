"""The tile map of the graph-capturable prefill kernel: which sequence, and which tile of
its queries, each program of a fixed-size grid takes (numpy on the host; no triton)."""

from __future__ import annotations

import numpy as np

TILE_M = 64  # queries per tile: the prefill kernel's BLOCK_M


def max_tiles(num_tokens: int, num_seqs: int, block_m: int = TILE_M) -> int:
    """An upper bound of sum_i cdiv(q_i, block_m) over num_seqs query counts summing to at
    most num_tokens: each sequence adds at most one partial tile to its full ones."""
    return num_tokens // block_m + num_seqs


def tile_map(
    query_lens: np.ndarray, num_tiles: int, block_m: int = TILE_M
) -> tuple[np.ndarray, np.ndarray]:
    """(tile_seq, tile_index), each [num_tiles] int64: entry j is tile tile_index[j] of
    sequence tile_seq[j]; entries past the step's tiles are -1 (padding: nothing to do).
    Sequences with no queries take no tile."""
    lens = np.asarray(query_lens, dtype=np.int64)
    per_seq = -(-lens // block_m)
    total = int(per_seq.sum())
    if total > num_tiles:
        raise ValueError(f"{total} tiles do not fit a grid of {num_tiles}")
    tile_seq = np.full(num_tiles, -1, dtype=np.int64)
    tile_index = np.full(num_tiles, -1, dtype=np.int64)
    tile_seq[:total] = np.repeat(np.arange(len(lens), dtype=np.int64), per_seq)
    first = np.cumsum(per_seq) - per_seq
    tile_index[:total] = np.arange(total, dtype=np.int64) - np.repeat(first, per_seq)
    return tile_seq, tile_index
