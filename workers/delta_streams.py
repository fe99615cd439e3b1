"""What AsyncEngine (engine on a thread) and ProcessEngine (engine in a process) share: how
a request is added without failing the loop, how a step's delta reaches its caller, and the
caller's stream over a queue of them (AsyncEngine: an asyncio.Queue; ProcessEngine: a
DeltaStream, which costs its loop about half as much per delta)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from itertools import compress, repeat
from operator import attrgetter, is_not
from typing import Any

from workers.engine import LLMEngine
from workers.errors import RequestFailedError
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.request_failure import failure_from_exception

_items_of = attrgetter("_items")
_waiter_of = attrgetter("_waiter")
_finish_reason_of = attrgetter("finish_reason")
DEAD_MESSAGE = "this replica's engine stopped on an internal error; retry (another replica)"


def add_or_error(engine: LLMEngine, spec: GenerateRequest) -> BaseException | None:
    """Add the request; None, or the error its caller gets: the engine's ValueError (a 400),
    or a RequestFailedError for anything else (this request alone; the loop goes on)."""
    try:
        engine.add_request(spec)
    except ValueError as e:
        return e
    except Exception as e:
        failure = failure_from_exception(spec.request_id, "being added", e)
        return RequestFailedError(spec.request_id, failure.message)
    return None


def delivered(delta: TokenDelta) -> TokenDelta | RequestFailedError:
    """What the caller's stream gets for a delta: a failed request's delta as its error."""
    if delta.finish_reason is FinishReason.ERROR:
        return RequestFailedError(delta.request_id, delta.error or "request failed")
    return delta


async def stream_deltas(
    request_id: str,
    queue: asyncio.Queue[Any],
    num_samples: int,
    streams: dict[str, Any],
    abort: Callable[[str], None],
) -> AsyncGenerator[TokenDelta, None]:
    """The deltas put on `queue` until every sample finished (an error item is raised). On
    the way out the request leaves `streams`, and is aborted if it had not finished."""
    num_finished = 0
    try:
        while num_finished < num_samples:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            num_finished += item.finished
            yield item
    finally:
        streams.pop(request_id, None)
        if num_finished < num_samples:
            abort(request_id)


class DeltaStream:
    """One request's items (its deltas, or its error) on their way from the loop that owns
    it to the caller's task on that loop: a deque and the caller's waiter, if it waits.
    asyncio.Queue does more per item (a counter, an event, a list of getters, a coroutine
    per get): at 256 streams on CPU, about twice the loop's time from put to the caller.

    `ended` turns true once the last item has arrived (every sample's finishing delta, or an
    error), taken or not; a caller that waits for that alone (`_end_waiter`, a DeltaFeed's
    pacing) is woken by it and by no other item. `failed`: an error is among the items."""

    __slots__ = (
        "_end_waiter",
        "_items",
        "_loop",
        "_num_ended",
        "_waiter",
        "ended",
        "failed",
        "num_samples",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, num_samples: int) -> None:
        self._loop = loop
        self._items: deque[TokenDelta | BaseException] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end_waiter: asyncio.Future[None] | None = None
        self._num_ended = 0  # samples whose finishing delta arrived
        self.num_samples = num_samples
        self.ended = False
        self.failed = False

    def put(self, item: TokenDelta | BaseException) -> None:
        self._items.append(item)
        if isinstance(item, BaseException):
            self.note_error()
        elif item.finish_reason is not None:
            self.note_finished()
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # not cancelled with its caller
            waiter.set_result(None)

    def note_finished(self) -> None:
        """A sample's finishing delta arrived (deliver and put append it)."""
        self._num_ended += 1
        if self._num_ended >= self.num_samples:
            self._end()

    def note_error(self) -> None:
        """An error arrived (deliver and put append it): nothing follows it."""
        self.failed = True
        self._end()

    def _end(self) -> None:
        self.ended = True
        waiter = self._end_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def deltas(
        self, request_id: str, streams: dict[str, Any], abort: Callable[[str], None]
    ) -> AsyncGenerator[TokenDelta, None]:
        """As stream_deltas, over this stream."""
        items = self._items
        num_finished = 0
        try:
            while num_finished < self.num_samples:
                if not items:
                    self._waiter = self._loop.create_future()
                    await self._waiter  # put or deliver completes it, once
                    self._waiter = None
                item = items.popleft()
                if isinstance(item, BaseException):
                    raise item
                num_finished += item.finished
                yield item
        finally:
            streams.pop(request_id, None)
            if num_finished < self.num_samples:
                abort(request_id)


def deliver(
    streams: dict[str, DeltaStream],
    request_ids: Sequence[str],
    items: Sequence[TokenDelta | BaseException],
) -> None:
    """Each item to its request's stream, as DeltaStream.put does, in C-level loops but the
    wake-ups and the few finishing items (this runs per delta); the items of requests no
    longer streamed are dropped."""
    targets: list[Any] = list(map(streams.get, request_ids))
    if not all(targets):  # a DeltaStream is true, a missing one None
        kept = [(s, item) for s, item in zip(targets, items, strict=True) if s is not None]
        targets, items = [s for s, _ in kept], [item for _, item in kept]
    deque(map(deque.append, map(_items_of, targets), items), maxlen=0)
    try:
        reasons = list(map(_finish_reason_of, items))
    except AttributeError:  # an error among the items (it has no finish reason)
        _note_ends(targets, items)
    else:
        for stream in compress(targets, map(is_not, reasons, repeat(None))):
            stream.note_finished()
    for waiter in filter(None, map(_waiter_of, targets)):  # a future is true
        if not waiter.done():  # not cancelled with its caller, not woken by an earlier item
            waiter.set_result(None)


def _note_ends(targets: list[DeltaStream], items: Sequence[TokenDelta | BaseException]) -> None:
    for stream, item in zip(targets, items, strict=True):
        if isinstance(item, BaseException):
            stream.note_error()
        elif item.finish_reason is not None:
            stream.note_finished()
