from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from router.coalesce import coalesce


async def numbers(n: int, closed: list[bool], delay: float = 0.0) -> AsyncIterator[int]:
    try:
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield i
    finally:
        closed.append(True)


def test_a_consumer_that_keeps_up_gets_items_one_by_one() -> None:
    async def main() -> list[list[int]]:
        return [batch async for batch in coalesce(numbers(5, [], delay=0.001))]

    assert asyncio.run(main()) == [[0], [1], [2], [3], [4]]


def test_a_slow_consumer_gets_what_piled_up_in_one_batch() -> None:
    async def main() -> list[list[int]]:
        batches = []
        async for batch in coalesce(numbers(50, [], delay=0.001)):
            batches.append(batch)
            await asyncio.sleep(0.02)  # a slow client
        return batches

    batches = asyncio.run(main())
    assert [i for b in batches for i in b] == list(range(50))
    assert len(batches) < 25


def test_a_minimum_interval_groups_a_fast_producer_but_not_the_first_item() -> None:
    async def main() -> list[tuple[float, list[int]]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        return [
            (loop.time() - start, batch)
            async for batch in coalesce(numbers(40, [], delay=0.002), min_interval_s=0.05)
        ]

    timed = asyncio.run(main())
    assert timed[0][1] == [0] and timed[0][0] < 0.04  # the first item goes at once
    assert [i for _, b in timed for i in b] == list(range(40))
    assert len(timed) <= 2 + timed[-1][0] / 0.045  # batches >= 50 ms apart, however slow
    assert len(timed) < 40
    gaps = [b - a for (a, _), (b, _) in pairwise(timed)]
    assert all(gap >= 0.045 for gap in gaps[:-1])


def test_closing_early_closes_the_source() -> None:
    closed: list[bool] = []

    async def main() -> None:
        batches = coalesce(numbers(1000, closed, delay=0.001))
        await anext(batches)
        await batches.aclose()

    asyncio.run(main())
    assert closed == [True]


def test_source_errors_reach_the_consumer_after_earlier_items() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("boom")

    async def main() -> list[int]:
        seen = []
        async for batch in coalesce(failing()):
            seen += batch
        return seen

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
