"""A Backend over one in-process AsyncEngine: the OpenAI service without Ray (tests, demos).
It is also the AdapterReplicas (router/adapter_control.py) of an in-process control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator

from router.adapter_catalog import AdapterSet, plan_sync
from router.replica_stream import MessageBudget, open_stream, replica_stream
from workers.async_engine import AsyncEngine
from workers.protocol import GenerateRequest, TokenDelta


class LocalBackend:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._adapters: dict[str, str] = {}
        self._budget = MessageBudget()

    async def submit(self, request: GenerateRequest) -> AsyncIterator[list[TokenDelta]]:
        return await open_stream(replica_stream(self.engine, request, self._budget))

    async def try_adapter(self, name: str, path: str) -> None:
        await self.engine.load_adapter(name, path)
        self._adapters[name] = path

    async def sync_adapters(self, desired: AdapterSet) -> None:
        plan = plan_sync(self._adapters, desired.adapters)
        for name in plan.unload:
            await self.engine.unload_adapter(name)
            del self._adapters[name]
        for name, path in plan.load:
            await self.engine.load_adapter(name, path)
            self._adapters[name] = path

    async def kv_usage(self) -> float:
        return self.engine.stats().kv_usage
