"""The router's Backend over Ray Serve handles to the LLMServer deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.caller_watch import Caller
from router.errors import overloaded
from router.replica_stream import open_stream, unpack
from workers.protocol import GenerateRequest, TokenDelta


class ServeBackend:
    def __init__(self, llm: DeploymentHandle, caller: Caller | None = None) -> None:
        """`caller`: this Router replica's actor, whose death aborts its requests."""
        self._llm = llm
        self._stream = llm.options(stream=True)
        self._caller = caller

    async def submit(self, request: GenerateRequest) -> AsyncIterator[list[TokenDelta]]:
        response = self._stream.generate_packed.remote(request, self._caller)
        try:
            return await open_stream(_cancel_on_close(response))
        except BackPressureError as e:
            raise overloaded("no replica can take more requests; retry shortly", 1.0, 503) from e
        except Exception as e:
            raise tandem_error(e) from None

    async def kv_usage(self) -> float:
        stats = await self._llm.stats.remote()
        return stats.kv_usage


async def _cancel_on_close(response: Any) -> AsyncIterator[list[TokenDelta]]:
    """Iterate a DeploymentResponseGenerator of packed batches; leaving early cancels the
    replica's call, which aborts the request in its engine."""
    finished = False
    try:
        async for data in response:
            yield unpack(data)
        finished = True
    except Exception as e:
        raise tandem_error(e) from None
    finally:
        if not finished:
            response.cancel()


def tandem_error(error: Exception) -> Exception:
    """The error a replica raised, without Ray's wrapping: a RayTaskError's message holds
    the remote traceback, pid, host and actor id, none of which a client may see. A replica
    that died mid-call becomes a 503 (Serve replaces it; a retry goes elsewhere)."""
    while isinstance(error, RayTaskError) and isinstance(error.cause, Exception):
        error = error.cause
    if isinstance(error, ActorDiedError | ActorUnavailableError | RayActorError):
        return overloaded("the replica serving this request stopped; retry shortly", 1.0, 503)
    return error
