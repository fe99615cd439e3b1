"""Coalescing: items that arrived while the consumer was busy come out as one batch.

A consumer that keeps up gets every item as soon as it exists (a batch of one); a slow
consumer (a client reading slowly, a busy event loop) gets everything that piled up since
its last read in one batch. With `min_interval_s`, a fast producer's batches settle to that
far apart: for a hop where each message has a fixed cost whoever reads it (a Ray Serve
stream), so it sends a few batches a second instead of one message per item. The spacing
ramps up to it rather than starting there: a batch waits at most RAMP times as long as the
stream has been sending (the first two go at once, then gaps of 2, 6, 18 ... items' time),
so a reader that needs a few items before it has something to show (a character split over
tokens, text held back by a stop string) is not kept waiting a whole interval at the start,
and a busy replica's short streams do not spend most of their messages on the ramp (each
costs the replica the same whatever it carries): a 64-token stream at 5.5 ms a token under
a 100 ms interval goes in 7 batches, where gaps only as long as the stream had been sending
(RAMP 1) took 9. The interval may be a function, read before each batch (a replica's
budget that grows with its streams); the last batch never waits: a source that ends flushes
what it made at once.

`coalesce` reads any async iterator, through a reader task and a queue per item;
`coalesce_pending` does the same for a source that can hand out everything pending at once
(a PendingSource: ProcessEngine's DeltaFeed), with one wake-up per batch and nothing per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
RAMP = 2  # a batch waits at most this many times as long as its stream has been sending


@runtime_checkable
class PendingSource(Protocol[T]):
    """A source that hands out what it holds in one go (workers/delta_feed.py DeltaFeed)."""

    @property
    def pending(self) -> bool:
        """Something (an item or the error) waits to be taken."""
        ...

    @property
    def ended(self) -> bool:
        """The last item (or the error) arrived, taken or not."""
        ...

    @property
    def finished(self) -> bool:
        """The last item was taken."""
        ...

    def take(self) -> list[T]:
        """Everything pending, in order (maybe none); raises the error once the items before
        it were taken."""
        ...

    async def arrival(self) -> None:
        """Until something is pending."""
        ...

    async def end(self, timeout_s: float) -> None:
        """Until the source ended, or `timeout_s` passed."""
        ...

    async def aclose(self) -> None: ...


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


async def coalesce(
    source: AsyncIterator[T], min_interval_s: float | Callable[[], float] = 0.0
) -> AsyncGenerator[list[T], None]:
    """Batches of what `source` produced since the previous batch. Closing the result (or
    cancelling its consumer) cancels the reader, which closes `source`."""
    interval = _as_function(min_interval_s)
    queue: asyncio.Queue[T | _End] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    first: float | None = None  # when the first batch went out
    last = 0.0  # and the latest

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        except Exception as e:  # handed to the consumer, which re-raises it
            queue.put_nowait(_End(e))
        else:
            queue.put_nowait(_End(None))

    reader = asyncio.create_task(read())
    try:
        while True:
            items = [await queue.get()]
            if first is not None and not isinstance(items[0], _End):
                wait = _hold(first, last, interval()) - loop.time()
                if wait > 0 and not reader.done():  # let the batch fill, unless it is the last
                    await asyncio.wait((reader,), timeout=wait)
            while not queue.empty():
                items.append(queue.get_nowait())
            end = next((i for i in items if isinstance(i, _End)), None)
            batch = [i for i in items if not isinstance(i, _End)]
            if batch:
                yield batch
                last = loop.time()
                first = last if first is None else first
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def coalesce_pending(
    source: PendingSource[T], min_interval_s: float | Callable[[], float] = 0.0
) -> AsyncGenerator[list[T], None]:
    """`coalesce` over a PendingSource: each batch is what the source held when the batch's
    wait ended. Closing the result closes `source`."""
    interval = _as_function(min_interval_s)
    loop = asyncio.get_running_loop()
    first: float | None = None  # when the first batch went out
    last = 0.0  # and the latest
    try:
        while not source.finished:
            # `coalesce`'s wait for the first item, then for the spacing, in one sleep: the
            # batch goes at the later of the two, or at once when the source ends
            if first is not None and not source.ended:
                wait = _hold(first, last, interval()) - loop.time()
                if wait > 0:
                    await source.end(wait)
            if not source.pending:
                await source.arrival()
            batch = source.take()  # raises the source's error, once what preceded it went
            if batch:
                yield batch
                last = loop.time()
                first = last if first is None else first
    finally:
        await source.aclose()


def _as_function(interval: float | Callable[[], float]) -> Callable[[], float]:
    return interval if callable(interval) else lambda: interval


def _hold(first: float, last: float, interval: float) -> float:
    """When the next batch may go: `interval` after the last, but never later than RAMP
    times as long as the stream has been sending (the ramp)."""
    return last + min(interval, RAMP * (last - first))
