"""The replica side of the router <-> replica stream.

A replica's `generate` yields `[]` once the engine accepted the request (so the router can
still answer a validation error with a 400 before it commits to a 200), then lists of
TokenDeltas, coalesced when the engine outpaces the reader and settling to one batch per
interval: each message of a Serve stream costs the same whatever it carries (about 0.7 ms of
the receiving Router's CPU, nearly all Ray Serve's), so a replica paces its streams to a
budget of messages per second in total (`MessageBudget`): a lone stream sends every 20 ms,
32 streams every 32 ms each, 100 or more every 100 ms. The first tokens are never held back:
the spacing ramps up from none (router/coalesce.py), so text that needs a few tokens to show
does not wait an interval, and the last batch goes as soon as the request finishes. Closing
the stream aborts the request in the engine. ProcessEngine's streams (DeltaFeed) are drained
a batch at a time (`coalesce_pending`), any other through a reader task (`coalesce`).

Over Ray Serve each batch travels pickled by the standard library (`pack`/`unpack`): Ray
would cloudpickle a list of dataclasses, whose Python-level reducer hooks cost several times
more per message, and the replica's loop pays that while its engine thread wants the GIL.
Each delta crosses as the tuple of its field values, not as an object: pickle reduces and
rebuilds an object through copyreg at several times the cost of a tuple of plain values
(1 delta: 1.7 -> 0.8 us to pack, 2.2 -> 0.9 us to unpack; 8 deltas: 6.1 -> 2.8 and 7.7 ->
3.4 us; a third of the bytes).
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, fields
from itertools import starmap
from operator import attrgetter
from typing import Protocol

from router.coalesce import PendingSource, coalesce, coalesce_pending
from workers.protocol import GenerateRequest, TokenDelta

CHUNK_INTERVAL_S = 0.02  # a lone stream's spacing
MAX_CHUNK_INTERVAL_S = 0.1  # the most a busy replica holds a stream's tokens
MESSAGE_COST_S = 0.001  # per-replica budget: 1000 messages a second over all its streams
FIELDS = tuple(f.name for f in fields(TokenDelta))
_field_values = attrgetter(*FIELDS)


@dataclass
class MessageBudget:
    """One replica's pacing: every stream's interval is `streams x cost_s`, clamped to
    [min_interval_s, max_interval_s], so the replica sends about 1 / cost_s messages a second
    in total however many streams it serves (until the clamp)."""

    cost_s: float = MESSAGE_COST_S
    min_interval_s: float = CHUNK_INTERVAL_S
    max_interval_s: float = MAX_CHUNK_INTERVAL_S
    streams: int = 0

    def interval(self) -> float:
        return min(self.max_interval_s, max(self.min_interval_s, self.streams * self.cost_s))

    @contextmanager
    def stream(self) -> Iterator[None]:
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1


class DeltaSource(Protocol):
    """AsyncEngine or ProcessEngine: `open` raises ValueError for a bad request."""

    async def open(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]: ...

    def abort(self, request_id: str) -> None: ...


async def replica_stream(
    engine: DeltaSource, request: GenerateRequest, budget: MessageBudget | None = None
) -> AsyncGenerator[list[TokenDelta], None]:
    """`budget`: the replica's, shared by its streams (default: this stream's alone)."""
    budget = budget or MessageBudget()
    deltas = await engine.open(request)  # raises ValueError for a bad request
    batches: AsyncGenerator[list[TokenDelta], None]
    if isinstance(deltas, PendingSource):  # ProcessEngine's: drained a batch at a time
        batches = coalesce_pending(deltas, budget.interval)
    else:
        batches = coalesce(deltas, budget.interval)
    try:
        yield []
    except BaseException:  # closed before the first batch: the batches never started
        if isinstance(deltas, PendingSource):
            await deltas.aclose()  # a DeltaFeed aborts its request when closed unfinished
        else:  # an unstarted generator's aclose runs none of its cleanup: abort it here
            engine.abort(request.request_id)
        raise
    with budget.stream():
        async with aclosing(batches):
            async for batch in batches:
                yield batch


async def open_stream(
    stream: AsyncIterator[list[TokenDelta]],
) -> AsyncIterator[list[TokenDelta]]:
    """Wait for the replica's acceptance (re-raising its error) and return the stream."""
    first = await anext(stream)
    assert first == [], f"a replica stream must start with an empty batch, got {first!r}"
    return stream


def pack(batch: list[TokenDelta]) -> bytes:
    """A batch as one bytes object: each delta's field values as a tuple, under the fields'
    names (protocol 5)."""
    return pickle.dumps((FIELDS, list(map(_field_values, batch))), protocol=5)


def unpack(data: bytes) -> list[TokenDelta]:
    """The batch `pack` made; only for bytes from our own replicas (it is pickle). A replica
    whose TokenDelta has other fields (another version) is read by the fields' names."""
    names, rows = pickle.loads(data)
    if names == FIELDS:
        return list(starmap(TokenDelta, rows))
    return [TokenDelta(**dict(zip(names, row, strict=True))) for row in rows]
