"""What AsyncEngine (engine on a thread) and ProcessEngine (engine in a process) share: how
a request is added without failing the loop, how a step's delta reaches its caller, and the
caller's stream over a queue of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from workers.engine import LLMEngine
from workers.errors import RequestFailedError
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.request_failure import failure_from_exception

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
