"""AttentionMetadata: where each token of a step reads and writes the paged KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch


@dataclass(frozen=True)
class AttentionMetadata:
    """Per-step layout of a flat token batch over the block tables.

    The step's tokens are concatenated: sequence i owns tokens
    `query_start_loc[i]:query_start_loc[i + 1]`, which sit at the last positions of its
    `seq_lens[i]` tokens of context.

    slot_mapping: [num_tokens] int64, cache slot (block * block_size + offset) each token's
        key and value are written to.
    block_tables: [num_seqs, max_blocks] int64, the blocks of each sequence, padded with 0.
    query_start_loc: num_seqs + 1 offsets into the token batch (host list).
    seq_lens: context length of each sequence after this step (host list).
    With decode_only, only the tensors are read (what a CUDA graph replays). With a tile
    map (tile_seq, tile_index: [max_tiles] int64 on the device, workers.attention.tiles),
    steps with prefill chunks read only the tensors too: the tiled prefill kernel runs them
    (a CUDA graph of a mixed step; the host tuples are then placeholders).
    """

    slot_mapping: torch.Tensor
    block_tables: torch.Tensor
    query_start_loc: tuple[int, ...]
    seq_lens: tuple[int, ...]
    block_size: int
    seq_lens_tensor: torch.Tensor | None = None  # [num_seqs] on the device
    decode_only: bool = False  # one query per sequence: the decode kernel does it all
    query_start_tensor: torch.Tensor | None = None  # query_start_loc on the device
    tile_seq: torch.Tensor | None = None  # each grid entry's sequence (-1: padding)
    tile_index: torch.Tensor | None = None  # and which tile of its queries

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens)

    @property
    def max_query_len(self) -> int:
        starts = self.query_start_loc
        return max(b - a for a, b in pairwise(starts))
