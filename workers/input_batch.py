"""InputBatch: the model runner's persistent state of the sequences it runs.

One row per live sequence holds its block table and its token history, updated in place
from each step's differences (workers/scheduler_output.py): rows are added for new
sequences, their tables truncated and extended as blocks are appended, replaced
(copy-on-write) or trimmed, the runner's own sampled tokens appended, and rows dropped when
their sequences leave (the last row moves into the hole: rows stay dense). A step's device
inputs are gathered from these arrays (workers/step_arrays.py), never from Python lists of
whole tables or histories.

Entries of a table past its length are 0, so a gathered [seqs, max_blocks] table is padded
with 0 as the attention kernels expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np

from workers.kv_cache.table_changes import BlockUpdate
from workers.running_decodes import RunningDecodes
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq


def _grown(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """array zero-padded to at least [rows, cols], doubling each dimension that grows."""
    old_rows, old_cols = array.shape
    if rows <= old_rows and cols <= old_cols:
        return array
    new_rows = max(old_rows, 1)
    while new_rows < rows:
        new_rows *= 2
    new_cols = max(old_cols, 1)
    while new_cols < cols:
        new_cols *= 2
    grown = np.zeros((new_rows, new_cols), dtype=array.dtype)
    grown[:old_rows, :old_cols] = array
    return grown


class InputBatch:
    """Rows 0..num_rows-1, one per sequence the runner holds (row_of: seq_id -> row)."""

    def __init__(self, rows: int = 8, max_blocks: int = 16, max_tokens: int = 256) -> None:
        self.row_of: dict[int, int] = {}
        self.seq_ids: list[int] = []  # row -> seq_id
        self.tables = np.zeros((rows, max_blocks), dtype=np.int64)
        self.num_blocks = np.zeros(rows, dtype=np.int64)
        self.tokens = np.zeros((rows, max_tokens), dtype=np.int64)
        self.num_tokens = np.zeros(rows, dtype=np.int64)  # known tokens of the history
        self.num_prompt_tokens = np.zeros(rows, dtype=np.int64)

    @property
    def num_rows(self) -> int:
        return len(self.seq_ids)

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self.row_of

    # -- differences in -------------------------------------------------------------------

    def remove(self, seq_ids: Iterable[int]) -> None:
        """Drop the rows of sequences that left (unknown ones are ignored)."""
        for seq_id in seq_ids:
            row = self.row_of.pop(seq_id, None)
            if row is None:
                continue
            last = len(self.seq_ids) - 1
            if row != last:
                self._move(last, row)
            self.seq_ids.pop()
            self._clear(last)

    def update(self, seqs: Sequence[ScheduledSeq]) -> None:
        """Apply each sequence's difference: a row for a new one (its history), then its
        block table. A sequence without `blocks` keeps no history and takes its whole
        table. Applying the same differences twice gives the same rows."""
        for s in seqs:
            row = self.row_of.get(s.seq_id)
            if row is None:
                if s.new is None and s.blocks is not None:
                    raise KeyError(f"sequence {s.seq_id} is not in the batch and comes as a diff")
                row = self._add(s.seq_id)
            if s.new is not None:
                self.set_history(row, s.new.token_ids, s.new.num_prompt_tokens)
            blocks = s.blocks
            if blocks is None:
                self.set_blocks(row, BlockUpdate(0, s.block_table))
            elif blocks.new_block_ids or blocks.num_kept != self.num_blocks[row]:
                self.set_blocks(row, blocks)

    def update_blocks(self, updates: Iterable[tuple[int, BlockUpdate]]) -> None:
        """Apply the (seq_id, update) table differences of sequences the batch holds."""
        for seq_id, update in updates:
            self.set_blocks(self.row_of[seq_id], update)

    def set_blocks(self, row: int, update: BlockUpdate) -> None:
        kept, new = update.num_kept, update.new_block_ids
        old = int(self.num_blocks[row])
        if kept > old:
            raise ValueError(f"row {row} holds {old} blocks; an update keeps {kept}")
        end = kept + len(new)
        self.tables = _grown(self.tables, self.tables.shape[0], end)
        table = self.tables[row]
        table[kept:end] = new
        if old > end:
            table[end:old] = 0
        self.num_blocks[row] = end

    def set_history(self, row: int, token_ids: Sequence[int], num_prompt_tokens: int) -> None:
        n = len(token_ids)
        self.tokens = _grown(self.tokens, self.tokens.shape[0], n)
        self.tokens[row, :n] = token_ids
        self.num_tokens[row] = n
        self.num_prompt_tokens[row] = num_prompt_tokens

    def record(self, seqs: Sequence[ScheduledSeq], output: ModelRunnerOutput) -> None:
        """Append the tokens a step sampled to the histories (after the step's own tokens:
        accepted drafts overwrite their positions). A sequence dropped since, or whose
        history stops short of them, is skipped."""
        sampled = output.sampled
        for s in seqs:
            tokens = sampled.get(s.seq_id) if s.sample else None
            row = self.row_of.get(s.seq_id)
            if not tokens or row is None:
                continue
            first = s.start_pos + s.num_tokens - len(s.spec_token_ids)
            known = int(self.num_tokens[row])
            if first > known:
                continue
            end = first + len(tokens)
            self.tokens = _grown(self.tokens, self.tokens.shape[0], end)
            self.tokens[row, first:end] = [t.token_id for t in tokens]
            self.num_tokens[row] = max(known, end)

    def record_decodes(self, decodes: RunningDecodes, output: ModelRunnerOutput) -> None:
        """record() for a step's RunningDecodes, each sampling one token after its position,
        in whole-array operations."""
        n = len(decodes)
        if len(output.decoded) != n:
            return  # the step failed as a whole: nothing sampled
        rows = np.fromiter(map(self.row_of.get, decodes.seq_ids, repeat(-1, n)), np.int64, n)
        tokens = np.array(output.decoded, dtype=np.int64)  # NO_TOKEN (< 0): failed
        first = np.array(decodes.positions, dtype=np.int64) + 1
        ok = (rows >= 0) & (tokens >= 0)
        if not ok.all():
            rows, tokens, first = rows[ok], tokens[ok], first[ok]
        known = self.num_tokens[rows]
        ok = first <= known
        if not ok.all():
            rows, tokens, first, known = rows[ok], tokens[ok], first[ok], known[ok]
        if not len(rows):
            return
        self.tokens = _grown(self.tokens, self.tokens.shape[0], int(first.max()) + 1)
        self.tokens[rows, first] = tokens
        self.num_tokens[rows] = np.maximum(known, first + 1)

    # -- views out ------------------------------------------------------------------------

    def rows(self, seqs: Sequence[ScheduledSeq]) -> np.ndarray:
        row_of = self.row_of
        return np.fromiter((row_of[s.seq_id] for s in seqs), dtype=np.int64, count=len(seqs))

    def decode_rows(self, decodes: RunningDecodes) -> np.ndarray:
        n = len(decodes)
        return np.fromiter(map(self.row_of.__getitem__, decodes.seq_ids), np.int64, n)

    def block_table(self, seq_id: int) -> list[int]:
        row = self.row_of[seq_id]
        return self.tables[row, : self.num_blocks[row]].tolist()

    def history(self, seq_id: int) -> list[int]:
        row = self.row_of[seq_id]
        return self.tokens[row, : self.num_tokens[row]].tolist()

    def prompt_and_outputs(self, seq_id: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The sequence's prompt and known outputs (what penalties count)."""
        row = self.row_of[seq_id]
        prompt = int(self.num_prompt_tokens[row])
        tokens = self.tokens[row, : self.num_tokens[row]].tolist()
        return tuple(tokens[:prompt]), tuple(tokens[prompt:])

    # -- rows -----------------------------------------------------------------------------

    def _add(self, seq_id: int) -> int:
        row = len(self.seq_ids)
        if row == self.tables.shape[0]:
            self.tables = _grown(self.tables, row + 1, self.tables.shape[1])
            self.tokens = _grown(self.tokens, row + 1, self.tokens.shape[1])
            size = self.tables.shape[0]
            for name in ("num_blocks", "num_tokens", "num_prompt_tokens"):
                old = getattr(self, name)
                grown = np.zeros(size, dtype=old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        self.seq_ids.append(seq_id)
        self.row_of[seq_id] = row
        return row

    def _move(self, src: int, dst: int) -> None:
        """Row src's sequence takes row dst (whose sequence has left)."""
        self._clear(dst)
        blocks, tokens = int(self.num_blocks[src]), int(self.num_tokens[src])
        self.tables[dst, :blocks] = self.tables[src, :blocks]
        self.tokens[dst, :tokens] = self.tokens[src, :tokens]
        self.num_blocks[dst] = blocks
        self.num_tokens[dst] = tokens
        self.num_prompt_tokens[dst] = self.num_prompt_tokens[src]
        seq_id = self.seq_ids[src]
        self.seq_ids[dst] = seq_id
        self.row_of[seq_id] = dst

    def _clear(self, row: int) -> None:
        self.tables[row, : self.num_blocks[row]] = 0
        self.num_blocks[row] = self.num_tokens[row] = self.num_prompt_tokens[row] = 0
