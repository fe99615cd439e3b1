"""KVCacheManager.decode_slot is allocate_slots(seq, position, 1) is not None: the same
answer and the same tables, copies and free blocks after it, shared blocks included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager


def build(prompt: int, fork: bool, num_blocks: int) -> KVCacheManager:
    kv = KVCacheManager(BlockPool(num_blocks), block_size=4)
    assert kv.allocate_slots(1, 0, prompt) is not None
    if fork:
        kv.fork(1, 2)
    return kv


def state(kv: KVCacheManager) -> tuple[object, ...]:
    return (
        {k: list(v) for k, v in kv.block_tables.items()},
        kv.take_pending_copies(),
        kv.pool.num_free_blocks,
    )


@given(
    st.integers(1, 12),
    st.booleans(),
    st.integers(3, 6),
    st.lists(st.integers(0, 2), min_size=1, max_size=8),
)
def test_decode_slot_is_allocate_slots(
    prompt: int, fork: bool, num_blocks: int, steps: list[int]
) -> None:
    fast, slow = build(prompt, fork, num_blocks), build(prompt, fork, num_blocks)
    position = prompt - 1
    for advance in steps:
        position += advance
        ok = slow.allocate_slots(1, position, 1) is not None
        assert fast.decode_slot(1, position) == ok
        assert state(fast) == state(slow)
