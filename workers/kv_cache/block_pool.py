"""BlockPool: reference-counted KV blocks, a free queue, and the prefix-cache hash map."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class KVBlock:
    """Bookkeeping of one physical block; the tensors live in the model runner."""

    block_id: int
    ref_cnt: int = 0
    block_hash: bytes | None = None


class BlockPool:
    """Owns every block id.

    A block is either in use (ref_cnt > 0) or in the free queue. Free blocks that still hold a
    cached prefix (a hash) sit at the back in least-recently-freed order; free blocks without
    one sit at the front, so allocation takes empty blocks first and then evicts the least
    recently used cached block.
    """

    def __init__(self, num_blocks: int, enable_caching: bool = True) -> None:
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self.enable_caching = enable_caching
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[bytes, int] = {}
        self.evictions = 0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    def allocate(self, count: int) -> list[int] | None:
        """Take `count` blocks (ref_cnt 1), evicting cached free blocks if needed; None if short."""
        if count > len(self._free):
            return None
        taken = []
        for _ in range(count):
            block_id, _ = self._free.popitem(last=False)
            block = self.blocks[block_id]
            if block.block_hash is not None:
                del self._cached[block.block_hash]
                block.block_hash = None
                self.evictions += 1
            block.ref_cnt = 1
            taken.append(block_id)
        return taken

    def share(self, block_ids: Iterable[int]) -> None:
        """One more owner for each block; a cached free block leaves the free queue."""
        for block_id in block_ids:
            block = self.blocks[block_id]
            if block.ref_cnt == 0:
                del self._free[block_id]
            block.ref_cnt += 1

    def free(self, block_ids: Iterable[int]) -> None:
        """Drop one owner of each block; blocks nobody owns return to the free queue."""
        for block_id in block_ids:
            block = self.blocks[block_id]
            assert block.ref_cnt > 0, f"double free of block {block_id}"
            block.ref_cnt -= 1
            if block.ref_cnt > 0:
                continue
            self._free[block_id] = None
            if block.block_hash is None:
                self._free.move_to_end(block_id, last=False)

    def lookup(self, block_hash: bytes) -> int | None:
        """The block holding this prefix hash, if cached."""
        return self._cached.get(block_hash)

    def cache(self, block_id: int, block_hash: bytes) -> None:
        """Publish a full block under its prefix hash (first writer wins on duplicates)."""
        if not self.enable_caching:
            return
        block = self.blocks[block_id]
        if block.block_hash is not None or block_hash in self._cached:
            return
        block.block_hash = block_hash
        self._cached[block_hash] = block_id
