"""KVCacheManager: per-sequence block tables over a BlockPool, prefix hits, forks with COW."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.table_changes import TableChanges


def hash_block(parent: bytes, token_ids: Sequence[int], extra_key: str) -> bytes:
    """Chained hash of one full block: the prefix before it, its tokens and the cache key
    (adapter identity and version), so equal hashes mean equal KV contents."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(extra_key.encode())
    h.update(b"|")
    h.update(",".join(map(str, token_ids)).encode())
    return h.digest()


class KVCacheManager:
    """Which blocks each sequence owns. Writes never touch a block another sequence reads:
    a shared block about to be written is copied first (copy-on-write). Every change to a
    table is recorded in `changes`, so the model runner is sent differences."""

    def __init__(self, pool: BlockPool, block_size: int) -> None:
        self.pool = pool
        self.block_size = block_size
        self.block_tables: dict[int, list[int]] = {}
        self._block_hashes: dict[int, list[bytes]] = {}
        self._pending_copies: list[tuple[int, int]] = []
        self.changes = TableChanges()
        self.prefix_query_tokens = 0
        self.prefix_hit_tokens = 0

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def find_cached_prefix(self, token_ids: Sequence[int], extra_key: str) -> list[int]:
        """Cached blocks holding the longest full-block prefix of token_ids, leaving at least
        one token to compute (its logits are needed)."""
        hits: list[int] = []
        parent = b""
        max_blocks = (len(token_ids) - 1) // self.block_size
        for i in range(max_blocks):
            parent = hash_block(
                parent, token_ids[i * self.block_size : (i + 1) * self.block_size], extra_key
            )
            block_id = self.pool.lookup(parent)
            if block_id is None:
                break
            hits.append(block_id)
        self.prefix_query_tokens += len(token_ids)
        self.prefix_hit_tokens += len(hits) * self.block_size
        return hits

    def allocate_slots(
        self,
        seq_id: int,
        num_computed_tokens: int,
        num_new_tokens: int,
        cached_blocks: Sequence[int] = (),
    ) -> list[int] | None:
        """Room for num_new_tokens after num_computed_tokens; None means no room (preempt).

        cached_blocks (from find_cached_prefix) start a new sequence's table. Returns the
        blocks newly allocated, copy-on-write replacements included.
        """
        table = self.block_tables.get(seq_id, [])
        needed = self.num_blocks_for(num_computed_tokens + num_new_tokens)
        blocks = self.pool.blocks
        first_written = num_computed_tokens // self.block_size
        # blocks to be written that others share: copied first (copy-on-write)
        shared = [i for i in range(first_written, len(table)) if blocks[table[i]].ref_cnt > 1]
        if table and not cached_blocks and needed <= len(table) and not shared:
            return []  # the common decode step: nothing to allocate or copy
        fresh = max(0, needed - len(table) - len(cached_blocks))
        reused_free = sum(1 for b in cached_blocks if blocks[b].ref_cnt == 0)
        if fresh + len(shared) + reused_free > self.pool.num_free_blocks:
            return None
        self.pool.share(cached_blocks)
        table = self.block_tables.setdefault(seq_id, [])
        self.changes.changed(seq_id, shared[0] if shared else len(table))
        table.extend(cached_blocks)
        new_blocks = self.pool.allocate(fresh + len(shared))
        assert new_blocks is not None
        for i, new_block in zip(shared, new_blocks[: len(shared)], strict=True):
            self._pending_copies.append((table[i], new_block))
            self.pool.free([table[i]])
            table[i] = new_block
        table.extend(new_blocks[len(shared) :])
        return new_blocks

    def decode_slot(self, seq_id: int, position: int) -> bool:
        """allocate_slots(seq_id, position, 1) is not None, without building anything in the
        common case: the slot is in the table's last block, which no one shares."""
        table = self.block_tables.get(seq_id)
        if (
            table
            and len(table) == position // self.block_size + 1
            and self.pool.blocks[table[-1]].ref_cnt <= 1
        ):
            return True
        return self.allocate_slots(seq_id, position, 1) is not None

    def cache_full_blocks(
        self, seq_id: int, token_ids: Sequence[int], num_computed_tokens: int, extra_key: str
    ) -> None:
        """Publish every block that is now full of computed tokens under its prefix hash."""
        hashes = self._block_hashes.setdefault(seq_id, [])
        num_full = num_computed_tokens // self.block_size
        if len(hashes) >= num_full:
            return  # most steps: no block filled up
        table = self.block_tables[seq_id]
        for i in range(len(hashes), num_full):
            parent = hashes[-1] if hashes else b""
            block_tokens = token_ids[i * self.block_size : (i + 1) * self.block_size]
            hashes.append(hash_block(parent, block_tokens, extra_key))
            self.pool.cache(table[i], hashes[-1])

    def trim(self, seq_id: int, num_tokens: int) -> None:
        """Free the blocks past the first num_tokens (slots of rejected drafts)."""
        table = self.block_tables[seq_id]
        keep = self.num_blocks_for(num_tokens)
        if len(table) > keep:
            self.pool.free(reversed(table[keep:]))
            del table[keep:]
            self.changes.changed(seq_id, keep)
            hashes = self._block_hashes.get(seq_id, [])
            del hashes[keep:]

    def fork(self, parent_id: int, child_id: int) -> None:
        """The child shares every block of the parent (ref counts), copy-on-write later."""
        table = self.block_tables.get(parent_id, [])
        self.pool.share(table)
        self.block_tables[child_id] = list(table)
        self.changes.changed(child_id, 0)
        self._block_hashes[child_id] = list(self._block_hashes.get(parent_id, []))

    def free(self, seq_id: int) -> None:
        """Release a sequence's blocks, tail first, so shared prefixes stay cached longest."""
        table = self.block_tables.pop(seq_id, [])
        self._block_hashes.pop(seq_id, None)
        self.changes.freed(seq_id)
        self.pool.free(reversed(table))

    def table_snapshot(self, seq_id: int) -> tuple[int, ...]:
        """The sequence's block table as a tuple (the same one until the table changes)."""
        return self.changes.snapshot(seq_id, self.block_tables[seq_id])

    def take_pending_copies(self) -> tuple[tuple[int, int], ...]:
        """(src, dst) block copies the runner must do before the next forward."""
        copies, self._pending_copies = tuple(self._pending_copies), []
        return copies

    def requeue_copies(self, copies: tuple[tuple[int, int], ...]) -> None:
        """Put back copies taken for a step that was dropped before it ran; they go first."""
        self._pending_copies[:0] = copies

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hit_tokens / max(self.prefix_query_tokens, 1)
