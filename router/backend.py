"""What the OpenAI service needs from the cluster. deployments/ implements it over Ray Serve
handles; tests implement it over an in-process AsyncEngine (router/local_backend.py).
Adapters are changed through router/adapter_control.py, not here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from workers.protocol import GenerateRequest, TokenDelta


class Backend(Protocol):
    async def submit(self, request: GenerateRequest) -> AsyncIterator[list[TokenDelta]]:
        """Start `request` on a replica and return its delta stream once the replica has
        accepted it. Raises what the replica raised: ValueError (bad request; the
        AdapterNotFoundError subclass for an unknown adapter), EngineDeadError, or an
        APIError (e.g. 503 when no replica can take it). Closing the stream aborts it."""
        ...

    async def kv_usage(self) -> float:
        """Recent KV cache usage across replicas, in [0, 1]."""
        ...
