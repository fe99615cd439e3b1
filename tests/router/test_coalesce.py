"""Coalescing (router/coalesce.py), for both kinds of source: `coalesce` over any async
iterator and `coalesce_pending` over a DeltaFeed (what ProcessEngine.open returns) behave
alike: every item once and in order, one by one for a consumer that keeps up, piled up for a
slow one, paced to the interval after a ramp, the last batch at once, errors re-raised after
the items before them, and closing the batches closes (aborts) the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from itertools import pairwise

import pytest

from router.coalesce import _hold, coalesce, coalesce_pending
from workers.delta_feed import DeltaFeed
from workers.delta_streams import DeltaStream, deliver
from workers.protocol import FinishReason, TokenDelta

KINDS = ("iterator", "pending")
Interval = float | Callable[[], float]


def item(i: int, last: bool) -> TokenDelta:
    return TokenDelta("r", 0, (i,), finish_reason=FinishReason.LENGTH if last else None)


class Source:
    """`n` items, one every `delay` s (then `error`, if any), as the `kind` of source; `closed`
    records that the source was closed before its last item (aborted)."""

    def __init__(
        self, kind: str, n: int, delay: float = 0.0, error: BaseException | None = None
    ) -> None:
        self.kind, self.n, self.delay, self.error = kind, n, delay, error
        self.closed: list[bool] = []
        self.made_at: list[float] = []  # when each item was made

    def batches(self, min_interval_s: Interval = 0.0) -> AsyncGenerator[list[TokenDelta], None]:
        if self.kind == "iterator":
            return coalesce(self._iterate(), min_interval_s)
        streams: dict[str, DeltaStream] = {}
        streams["r"] = stream = DeltaStream(asyncio.get_running_loop(), 1)
        feed = DeltaFeed(stream, "r", streams, lambda _: self.closed.append(True))
        asyncio.get_running_loop().create_task(self._deliver(streams))
        return coalesce_pending(feed, min_interval_s)

    def _next(self, i: int) -> TokenDelta:
        self.made_at.append(asyncio.get_running_loop().time())
        return item(i, last=i == self.n - 1 and self.error is None)

    async def _iterate(self) -> AsyncIterator[TokenDelta]:
        finished = False
        try:
            for i in range(self.n):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield self._next(i)
            finished = True
            if self.error is not None:
                raise self.error
        finally:
            if not finished:
                self.closed.append(True)

    async def _deliver(self, streams: dict[str, DeltaStream]) -> None:
        for i in range(self.n):
            if self.delay:
                await asyncio.sleep(self.delay)
            if "r" not in streams:  # the feed was closed
                return
            deliver(streams, ["r"], [self._next(i)])
        if self.error is not None:
            deliver(streams, ["r"], [self.error])


def tokens(batch: list[TokenDelta]) -> list[int]:
    return [d.token_ids[0] for d in batch]


async def timed(
    source: Source, min_interval_s: Interval, start: float | None = None
) -> list[tuple[float, list[int]]]:
    """(seconds since the start, tokens) of each batch."""
    loop = asyncio.get_running_loop()
    start = loop.time() if start is None else start
    return [(loop.time() - start, tokens(b)) async for b in source.batches(min_interval_s)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_consumer_that_keeps_up_gets_items_one_by_one(kind: str) -> None:
    async def main() -> list[list[int]]:
        return [tokens(b) async for b in Source(kind, 5, delay=0.005).batches()]

    assert asyncio.run(main()) == [[0], [1], [2], [3], [4]]


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_consumer_gets_what_piled_up_in_one_batch(kind: str) -> None:
    async def main() -> list[list[int]]:
        batches = []
        async for batch in Source(kind, 50, delay=0.001).batches():
            batches.append(tokens(batch))
            await asyncio.sleep(0.02)  # a slow client
        return batches

    batches = asyncio.run(main())
    assert [i for b in batches for i in b] == list(range(50))
    assert len(batches) < 25


@pytest.mark.parametrize("kind", KINDS)
def test_a_minimum_interval_groups_a_fast_producer_but_not_the_first_item(kind: str) -> None:
    timed_batches = asyncio.run(timed(Source(kind, 100, delay=0.002), 0.05))
    assert timed_batches[0][1] == [0] and timed_batches[0][0] < 0.04  # the first at once
    assert [i for _, b in timed_batches for i in b] == list(range(100))
    assert len(timed_batches) < 25
    gaps = [b - a for (a, _), (b, _) in pairwise(timed_batches)]
    # once the stream has run for an interval, batches are >= 50 ms apart however slow
    start = timed_batches[0][0]
    settled = [
        g for (at, _), g in zip(timed_batches, gaps[:-1], strict=False) if at - start >= 0.05
    ]
    assert settled and all(gap >= 0.045 for gap in settled)


@pytest.mark.parametrize("kind", KINDS)
def test_the_first_items_of_a_stream_are_not_held_for_the_interval(kind: str) -> None:
    """A reader that needs a few items before it can show anything (a character split over
    several tokens) gets them within a few producer steps, not after a whole interval."""
    timed_batches = asyncio.run(timed(Source(kind, 60, delay=0.002), 0.2))
    seen = 0
    fourth_at = float("inf")
    for at, batch in timed_batches:
        seen += len(batch)
        if seen >= 4:
            fourth_at = at
            break
    assert fourth_at < 0.1  # half the interval; the producer made 4 items in about 8 ms


@pytest.mark.parametrize("kind", KINDS)
def test_the_spacing_ramps_up_from_none(kind: str) -> None:
    """Two batches at once, then gaps that grow with how long the stream has sent (2, 6, 18
    ... items' time), up to the interval."""
    timed_batches = asyncio.run(timed(Source(kind, 150, delay=0.002), 0.06))
    gaps = [b - a for (a, _), (b, _) in pairwise(timed_batches[:-1])]
    assert len(gaps) >= 5
    assert gaps[0] < 0.02  # the second batch waits for its item, not for the spacing
    assert gaps[2] < gaps[5]  # the gaps grow ...
    assert max(gaps) < 0.06 + 0.03  # ... to the interval, not past it (loop lag allowed)


def test_a_short_stream_spends_few_batches_on_the_ramp() -> None:
    """The batch times the spacing rule gives a 64-token stream, a token every 5.5 ms, under
    a busy replica's 100 ms interval (each batch a Serve message the replica pays for)."""
    made = [k * 0.0055 for k in range(64)]
    sent, first, last, at = 0, None, 0.0, []
    while sent < len(made):
        t = made[sent]
        if first is not None:  # the last batch goes when the stream ends, not later
            t = max(t, min(_hold(first, last, 0.1), made[-1]))
        sent = sum(1 for m in made if m <= t)
        at.append(t)
        last, first = t, t if first is None else first
    assert len(at) == 7
    assert at[1] - at[0] < 0.01 and at[2] - at[0] < 0.02  # the first three within 20 ms
    gaps = [b - a for a, b in pairwise(at[:-1])]
    assert gaps == sorted(gaps) and max(gaps) <= 0.1 + 1e-9


@pytest.mark.parametrize("kind", KINDS)
def test_the_last_batch_never_waits_for_the_interval(kind: str) -> None:
    async def main() -> float:
        # batches ramp out at about 0, 2, 6, 18, 54, 162 ms, the next due at 362 ms: the
        # 100th item, made at 200 ms, would wait for it
        source = Source(kind, 100, delay=0.002)
        batches = await timed(source, 0.2, start=0.0)  # times on the loop's clock
        return batches[-1][0] - source.made_at[-1]

    assert asyncio.run(main()) < 0.03  # not the rest of a 200 ms interval


@pytest.mark.parametrize("kind", KINDS)
def test_the_interval_is_read_before_each_batch(kind: str) -> None:
    """A budget that changes (a replica's streams come and go) takes effect at once."""

    async def main() -> list[tuple[float, list[int]]]:
        loop = asyncio.get_running_loop()
        start = loop.time()

        def interval() -> float:  # a long spacing for the first 150 ms, then none
            return 0.1 if loop.time() - start < 0.15 else 0.0

        return await timed(Source(kind, 150, delay=0.002), interval)

    timed_batches = asyncio.run(main())
    early = [b for at, b in timed_batches if at < 0.15]
    late = [b for at, b in timed_batches if at >= 0.25]
    assert max(len(b) for b in early) > 10  # held up to 100 ms
    assert late and sum(len(b) for b in late) / len(late) < 3  # then nearly one by one


@pytest.mark.parametrize("kind", KINDS)
def test_closing_early_closes_the_source(kind: str) -> None:
    source = Source(kind, 1000, delay=0.001)

    async def main() -> None:
        batches = source.batches()
        await anext(batches)
        await batches.aclose()

    asyncio.run(main())
    assert source.closed == [True]


@pytest.mark.parametrize("kind", KINDS)
def test_source_errors_reach_the_consumer_after_earlier_items(kind: str) -> None:
    source = Source(kind, 3, delay=0.001, error=ValueError("boom"))

    async def main(seen: list[int]) -> None:
        async for batch in source.batches(0.05):
            seen += tokens(batch)

    seen: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main(seen))
    assert seen == [0, 1, 2]
