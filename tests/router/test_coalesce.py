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


async def timed_batches(
    n: int, delay: float, min_interval_s: float
) -> list[tuple[float, list[int]]]:
    """(seconds since the start, batch) for a producer of one item every `delay`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    return [
        (loop.time() - start, batch)
        async for batch in coalesce(numbers(n, [], delay=delay), min_interval_s=min_interval_s)
    ]


def test_a_minimum_interval_groups_a_fast_producer_but_not_the_first_item() -> None:
    timed = asyncio.run(timed_batches(100, delay=0.002, min_interval_s=0.05))
    assert timed[0][1] == [0] and timed[0][0] < 0.04  # the first item goes at once
    assert [i for _, b in timed for i in b] == list(range(100))
    assert len(timed) < 25
    gaps = [b - a for (a, _), (b, _) in pairwise(timed)]
    # once the stream has run for an interval, batches are >= 50 ms apart however slow
    start = timed[0][0]
    settled = [g for (at, _), g in zip(timed, gaps[:-1], strict=False) if at - start >= 0.05]
    assert settled and all(gap >= 0.045 for gap in settled)


def test_the_first_items_of_a_stream_are_not_held_for_the_interval() -> None:
    """A reader that needs a few items before it can show anything (a character split over
    several tokens) gets them within a few producer steps, not after a whole interval."""
    timed = asyncio.run(timed_batches(60, delay=0.002, min_interval_s=0.2))
    seen = 0
    fourth_at = float("inf")
    for at, batch in timed:
        seen += len(batch)
        if seen >= 4:
            fourth_at = at
            break
    assert fourth_at < 0.1  # half the interval; the producer made 4 items in about 8 ms


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
