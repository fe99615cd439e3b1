"""The replica side of the router <-> replica stream.

A replica's `generate` yields `[]` once the engine accepted the request (so the router can
still answer a validation error with a 400 before it commits to a 200), then lists of
TokenDeltas, coalesced when the engine outpaces the reader and settling to one batch every
CHUNK_INTERVAL_S (each message of a Serve stream costs the same whatever it carries). The
first tokens are never held back: the spacing ramps up from none (router/coalesce.py), so
text that needs a few tokens to show does not wait an interval. Closing the stream aborts
the request in the engine.

Over Ray Serve each batch travels pickled by the standard library (`pack`/`unpack`): Ray
would cloudpickle a list of dataclasses, whose Python-level reducer hooks cost several times
more per message, and the replica's loop pays that while its engine thread wants the GIL.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Protocol

from router.coalesce import coalesce
from workers.protocol import GenerateRequest, TokenDelta

CHUNK_INTERVAL_S = 0.02


class DeltaSource(Protocol):
    def add_request(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]: ...


async def replica_stream(
    engine: DeltaSource, request: GenerateRequest
) -> AsyncIterator[list[TokenDelta]]:
    deltas = engine.add_request(request)  # raises ValueError for a bad request
    yield []
    async with aclosing(coalesce(deltas, CHUNK_INTERVAL_S)) as batches:
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
    """A batch as one bytes object (protocol 5; TokenDelta pickles by reference)."""
    return pickle.dumps(batch, protocol=5)


def unpack(data: bytes) -> list[TokenDelta]:
    """The batch `pack` made; only for bytes from our own replicas (it is pickle)."""
    return pickle.loads(data)
