"""Coalescing: items that arrived while the consumer was busy come out as one batch.

A consumer that keeps up gets every item as soon as it exists (a batch of one); a slow
consumer (a client reading slowly, a busy event loop) gets everything that piled up since
its last read in one batch. With `min_interval_s`, batches after the first are at least that
far apart: for a hop where each message has a fixed cost whoever reads it (a Ray Serve
stream), so a fast producer sends a few batches a second instead of one message per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


async def coalesce(source: AsyncIterator[T], min_interval_s: float = 0.0) -> AsyncIterator[list[T]]:
    """Batches of what `source` produced since the previous batch. Closing the result (or
    cancelling its consumer) cancels the reader, which closes `source`."""
    queue: asyncio.Queue[T | _End] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    last = -float("inf")

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
            wait = last + min_interval_s - loop.time()
            if wait > 0 and not isinstance(items[0], _End):
                await asyncio.sleep(wait)  # let the batch fill
            while not queue.empty():
                items.append(queue.get_nowait())
            end = next((i for i in items if isinstance(i, _End)), None)
            batch = [i for i in items if not isinstance(i, _End)]
            if batch:
                yield batch
                last = loop.time()
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
