"""BlockPool and KVCacheManager: ref counts, LRU eviction of cached blocks, copy-on-write."""

from __future__ import annotations

from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager


def make_manager(num_blocks: int = 8, block_size: int = 4) -> KVCacheManager:
    return KVCacheManager(BlockPool(num_blocks), block_size)


def test_allocate_returns_none_when_short_and_takes_nothing() -> None:
    kv = make_manager(num_blocks=3)
    assert kv.allocate_slots(1, 0, 12) is not None
    assert kv.allocate_slots(2, 0, 1) is None
    assert kv.pool.num_free_blocks == 0
    kv.free(1)
    assert kv.pool.num_free_blocks == 3


def test_prefix_hits_share_blocks_and_count() -> None:
    kv = make_manager()
    tokens = list(range(10))
    kv.allocate_slots(1, 0, 10)
    kv.cache_full_blocks(1, tokens, 10, extra_key="")
    hits = kv.find_cached_prefix(tokens, "")
    assert hits == kv.block_tables[1][:2]
    assert kv.prefix_hit_tokens == 8
    assert kv.find_cached_prefix(tokens, "adapter-a:v1") == []  # other adapter: no reuse
    kv.allocate_slots(2, 8, 2, hits)
    assert [kv.pool.blocks[b].ref_cnt for b in hits] == [2, 2]


def test_full_prompt_hit_leaves_one_token_to_compute() -> None:
    kv = make_manager()
    tokens = list(range(8))
    kv.allocate_slots(1, 0, 8)
    kv.cache_full_blocks(1, tokens, 8, "")
    assert len(kv.find_cached_prefix(tokens, "")) == 1


def test_lru_eviction_of_cached_free_blocks() -> None:
    kv = make_manager(num_blocks=4)
    for seq_id, start in ((1, 0), (2, 100)):
        tokens = list(range(start, start + 8))
        kv.allocate_slots(seq_id, 0, 8)
        kv.cache_full_blocks(seq_id, tokens, 8, "")
    kv.free(1)
    kv.free(2)
    assert kv.pool.num_cached_blocks == 4
    # Evicts the least recently freed cached block: seq 1's tail (freed tail first), so the
    # prefix it shares with others survives longest.
    kv.allocate_slots(3, 0, 4)
    assert len(kv.find_cached_prefix([*range(8), 0], "")) == 1
    assert len(kv.find_cached_prefix([*range(100, 108), 0], "")) == 2
    assert kv.pool.evictions == 1


def test_uncached_free_blocks_are_taken_before_cached_ones() -> None:
    kv = make_manager(num_blocks=4)
    kv.allocate_slots(1, 0, 4)
    kv.cache_full_blocks(1, [1, 2, 3, 4], 4, "")
    kv.free(1)
    kv.allocate_slots(2, 0, 12)
    assert kv.pool.evictions == 0
    assert len(kv.find_cached_prefix([1, 2, 3, 4, 5], "")) == 1


def test_fork_shares_and_copy_on_write_splits_the_partial_block() -> None:
    kv = make_manager()
    kv.allocate_slots(1, 0, 6)  # blocks: one full, one partial
    kv.fork(1, 2)
    parent, child = kv.block_tables[1], kv.block_tables[2]
    assert parent == child and kv.pool.num_free_blocks == 6
    kv.allocate_slots(2, 6, 1)  # the child writes into the shared partial block
    assert kv.block_tables[2][0] == parent[0]
    assert kv.block_tables[2][1] != parent[1]
    assert kv.take_pending_copies() == ((parent[1], kv.block_tables[2][1]),)
    kv.allocate_slots(1, 6, 1)  # the parent now owns its block alone: no copy
    assert kv.take_pending_copies() == ()
    kv.free(1)
    kv.free(2)
    assert kv.pool.num_free_blocks == 8
