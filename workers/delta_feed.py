"""DeltaFeed: the caller's side of one request's DeltaStream, what ProcessEngine.open returns.

It is an async iterator of the request's deltas, one by one, as AsyncEngine's streams are;
and it hands out everything that arrived in one go (`take`), with waits for the next arrival
and for the end (`arrival`, `end`), which is what the replica's pacing wants
(router/coalesce.py coalesce_pending): one wake-up and one list per batch instead of a
coroutine step, a task switch and a queue item per delta.

Either way the request leaves the engine's streams once its every sample finished, or on
`aclose` (or an error, or the feed dropped unfinished), which aborts it in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from itertools import repeat
from operator import attrgetter, is_not
from typing import Any

from workers.delta_streams import DeltaStream
from workers.protocol import TokenDelta

_finish_reason_of = attrgetter("finish_reason")


class DeltaFeed:
    __slots__ = ("_abort", "_closed", "_num_finished", "_request_id", "_stream", "_streams")

    def __init__(
        self,
        stream: DeltaStream,
        request_id: str,
        streams: dict[str, Any],
        abort: Callable[[str], None],
    ) -> None:
        """`streams`: where the engine finds `stream` under `request_id` (left on the way
        out); `abort`: the engine's, for a request left unfinished."""
        self._stream = stream
        self._request_id = request_id
        self._streams = streams
        self._abort = abort
        self._num_finished = 0
        self._closed = False

    @property
    def pending(self) -> bool:
        """Something (a delta or the error) waits to be taken."""
        return bool(self._stream._items)

    @property
    def ended(self) -> bool:
        """The request's last item arrived (taken or not): no more wait is worth it."""
        return self._stream.ended

    @property
    def finished(self) -> bool:
        """Every sample's finishing delta was taken: the feed is done."""
        return self._num_finished >= self._stream.num_samples

    def take(self) -> list[TokenDelta]:
        """Every delta that arrived since the last take, in order (maybe none); the error
        that followed them is raised by the next take, which closes the feed."""
        stream = self._stream
        items = stream._items
        batch: list[Any] = list(items)
        items.clear()
        if stream.failed:
            at = next(i for i, item in enumerate(batch) if isinstance(item, BaseException))
            error: BaseException = batch[at]
            if at == 0:
                self._close()
                raise error
            items.append(error)
            del batch[at:]
        self._num_finished += sum(map(is_not, map(_finish_reason_of, batch), repeat(None)))
        if self.finished:
            self._leave()
        return batch

    async def arrival(self) -> None:
        """Until something is pending."""
        stream = self._stream
        while not stream._items:
            stream._waiter = waiter = stream._loop.create_future()
            try:
                await waiter  # deliver or put completes it
            finally:
                stream._waiter = None

    async def end(self, timeout_s: float) -> None:
        """Until the request's last item arrived, or `timeout_s` passed; other arrivals do
        not wake it."""
        stream = self._stream
        if stream.ended:
            return
        stream._end_waiter = waiter = stream._loop.create_future()
        timer = stream._loop.call_later(timeout_s, _settle, waiter)
        try:
            await waiter
        finally:
            stream._end_waiter = None
            timer.cancel()

    def __aiter__(self) -> DeltaFeed:
        return self

    async def __anext__(self) -> TokenDelta:
        if self.finished or self._closed:
            raise StopAsyncIteration
        items = self._stream._items
        if not items:
            await self.arrival()
        item = items.popleft()
        if isinstance(item, BaseException):
            self._close()
            raise item
        if item.finish_reason is not None:
            self._num_finished += 1
            if self.finished:
                self._leave()
        return item

    async def aclose(self) -> None:
        """Leave the engine's streams; a request not finished is aborted."""
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._leave()
        if not self.finished:
            self._abort(self._request_id)

    def _leave(self) -> None:
        self._closed = True
        if self._streams.get(self._request_id) is self._stream:
            del self._streams[self._request_id]

    def __del__(self) -> None:
        """Dropped unfinished (never iterated, or not closed): abort it on its loop."""
        if getattr(self, "_closed", True) or self.finished:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._stream._loop.call_soon_threadsafe(self._close)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
