"""TableChanges: what changed in the block tables since the model runner last got them.

The runner keeps every live sequence's block table (workers/input_batch.py) and is sent
only differences: for a sequence it holds, the entries kept and those appended since; for
one it does not hold (new, forked, readmitted after preemption), the whole table once; and
the sequences whose tables were freed. KVCacheManager records each change here as it makes
it; the scheduler reads the differences of the sequences it schedules and, once the step
is built, marks them sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from workers.records import record


@record
class BlockUpdate:
    """How a block table differs from the runner's copy: keep its first num_kept entries,
    then append new_block_ids. Applying it twice gives the same table."""

    num_kept: int
    new_block_ids: tuple[int, ...] = ()


class TableChanges:
    def __init__(self) -> None:
        # first entry changed since the runner got the table (absent: nothing changed)
        self._changed_from: dict[int, int] = {}
        self._held: set[int] = set()  # tables the runner holds (sent since allocated)
        self._resend: set[int] = set()  # held, but to be sent whole again (a step dropped)
        self._freed: list[int] = []  # held tables freed since the last step took them
        self._snapshots: dict[int, tuple[int, ...]] = {}

    # -- what KVCacheManager reports --------------------------------------------------------

    def changed(self, seq_id: int, index: int) -> None:
        """Entries from `index` on were replaced, appended or removed."""
        first = self._changed_from.get(seq_id)
        if first is None or index < first:
            self._changed_from[seq_id] = index
        self._snapshots.pop(seq_id, None)

    def freed(self, seq_id: int) -> None:
        self._changed_from.pop(seq_id, None)
        self._snapshots.pop(seq_id, None)
        self._resend.discard(seq_id)
        if seq_id in self._held:
            self._held.discard(seq_id)
            self._freed.append(seq_id)

    # -- what the scheduler reads -----------------------------------------------------------

    def is_new(self, seq_id: int) -> bool:
        """Whether the runner lacks the sequence (it is then sent whole: tokens and table)."""
        return seq_id not in self._held or seq_id in self._resend

    def snapshot(self, seq_id: int, table: list[int]) -> tuple[int, ...]:
        """The table as a tuple, built again only after it changed."""
        snap = self._snapshots.get(seq_id)
        if snap is None:
            snap = self._snapshots[seq_id] = tuple(table)
        return snap

    def update(self, seq_id: int, table: Sequence[int]) -> BlockUpdate:
        """The table's difference from the runner's copy (all of it for a new sequence)."""
        if self.is_new(seq_id):
            return BlockUpdate(0, tuple(table))
        kept = min(self._changed_from.get(seq_id, len(table)), len(table))
        if kept == len(table):
            return BlockUpdate(kept)
        return BlockUpdate(kept, tuple(table[kept:]))

    def held_update(self, seq_id: int, table: Sequence[int]) -> BlockUpdate | None:
        """For a table the runner holds (not is_new): its difference, None if unchanged."""
        first = self._changed_from.get(seq_id)
        if first is None:
            return None
        kept = min(first, len(table))
        return BlockUpdate(kept, tuple(table[kept:]))

    def sent(self, seq_ids: Iterable[int]) -> None:
        """The runner gets these sequences' updates with the step just built."""
        for seq_id in seq_ids:
            self._changed_from.pop(seq_id, None)
            self._held.add(seq_id)
            self._resend.discard(seq_id)

    def take_freed(self) -> tuple[int, ...]:
        freed, self._freed = tuple(self._freed), []
        return freed

    def unsend(
        self, updates: Iterable[tuple[int, BlockUpdate, bool]], freed: Sequence[int]
    ) -> None:
        """A built step never reached the runner: its (seq_id, update, whole) differences
        and freed tables are sent again with the next one."""
        for seq_id, update, whole in updates:
            if seq_id not in self._held:
                continue  # freed since: nothing to send
            if whole:
                self._resend.add(seq_id)
            self.changed(seq_id, update.num_kept)
        self._freed[:0] = [s for s in freed if s not in self._held]
