"""What the OpenAI service needs from the cluster. deployments/ implements it over Ray Serve
handles; tests implement it over an in-process AsyncEngine (router/local_backend.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from router.adapter_catalog import AdapterSet
from workers.protocol import GenerateRequest, TokenDelta


class Backend(Protocol):
    async def submit(self, request: GenerateRequest) -> AsyncIterator[list[TokenDelta]]:
        """Start `request` on a replica and return its delta stream once the replica has
        accepted it. Raises what the replica raised: ValueError (bad request; the
        AdapterNotFoundError subclass for an unknown adapter), EngineDeadError, or an
        APIError (e.g. 503 when no replica can take it). Closing the stream aborts it."""
        ...

    async def try_adapter(self, name: str, path: str) -> None:
        """Load a new adapter on one replica, raising its AdapterLoadError (a 400), so a
        broken adapter is refused before it joins the desired set."""
        ...

    async def sync_adapters(self, desired: AdapterSet) -> None:
        """Return once replicas hold `desired` (or after a bounded wait; replicas that
        lag converge on their own)."""
        ...

    async def kv_usage(self) -> float:
        """Recent KV cache usage across replicas, in [0, 1]."""
        ...
