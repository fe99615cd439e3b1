"""LLMServer: one engine per replica (stepping on a thread here, AsyncEngine, or in a process
of its own, ProcessEngine), streaming TokenDeltas to the Router.

Methods the Router calls through its handle: `generate_packed` (`generate`'s stream with each
batch packed, see router/replica_stream.py), `stats`, and the adapter methods. Serve calls
`record_routing_stats` (for TandemRequestRouter) and `check_health`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.adapter_sync import AdapterSync
from deployments.caller_watch import Caller, CallerWatch
from deployments.engine_settings import EngineSettings
from deployments.metrics import RayMetrics
from deployments.remote_draft import DraftServerClient
from router.metrics import labels
from router.replica_stream import MessageBudget, pack, replica_stream
from router.routing_stats import RoutingStats
from workers.async_engine import AsyncEngine
from workers.engine import LLMEngine
from workers.process_engine import ProcessEngine
from workers.protocol import AdapterInfo, GenerateRequest, ReplicaStats, TokenDelta

logger = logging.getLogger(__name__)

STATS_PERIOD_S = 1.0
# The engine thread holds the GIL for a step's Python work; the replica's loop needs it back
# after every call into Ray's core (each streamed message makes several). Python makes a
# thread that wants the GIL wait up to the switch interval (default 5 ms) before the holder
# must yield it, so streams queue behind engine steps. 1 ms bounds that wait.
GIL_SWITCH_INTERVAL_S = 0.001


@serve.deployment(name="LLMServer")
class LLMServer:
    def __init__(
        self,
        model_dir: str,
        model_name: str,
        engine: dict[str, Any],
        adapter_roots: list[str] | None = None,
        control_plane: str | None = None,
        draft: DeploymentHandle | None = None,
        engine_process: bool = False,
    ) -> None:
        """`control_plane`: the AdapterControl deployment's name, whose desired adapter set
        this replica follows (None: no runtime adapters). `draft`: a DraftServer handle that
        serves SpeculationMode.REMOTE requests (needs `engine.spec`). `engine_process`: the
        engine steps in a process of its own (ProcessEngine), else on a thread here."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # this process is the replica's own
        settings = EngineSettings.model_validate(engine)
        config = settings.engine_config(model_dir, tuple(adapter_roots or ()))
        remote = None
        if draft is not None and config.spec is not None:
            remote = DraftServerClient(draft, config.spec.remote_timeout_s)
        self.engine: AsyncEngine | ProcessEngine
        if engine_process:
            self.engine = ProcessEngine(config, remote_draft=remote)
        else:
            llm_engine = LLMEngine(config)
            if remote is not None:  # before the loop starts: not shared with its thread yet
                llm_engine.attach_remote_draft(remote)
            self.engine = AsyncEngine(llm_engine)
        self.num_abandoned = 0  # streams that ended before the request finished
        self.budget = MessageBudget()  # paces every stream of this replica
        self._tags = labels(model_name, None)
        self._metrics = RayMetrics()
        self.callers = CallerWatch(self.engine.abort)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._export_stats()), loop.create_task(self.callers.run())]
        self._adapter_sync: AdapterSync | None = None
        if control_plane is not None and config.lora is not None:
            self._adapter_sync = AdapterSync(self, control_plane)
            self._tasks.append(asyncio.get_running_loop().create_task(self._adapter_sync.run()))

    async def generate(
        self, request: GenerateRequest, caller: Caller | None = None
    ) -> AsyncGenerator[list[TokenDelta], None]:
        """`caller`: the calling actor (name, namespace); its death aborts the request."""
        if request.adapter is not None and self._adapter_sync is not None:
            await self._adapter_sync.ready()  # a new replica serves the set from its start
        completed = False
        try:
            with self.callers.watching(caller, request.request_id):
                stream = replica_stream(self.engine, request, self.budget)
                async with aclosing(stream) as batches:  # closed here: the abort is prompt
                    async for batch in batches:
                        yield batch
            completed = True
        finally:
            if not completed:  # the caller left (client disconnect, stop string) or failed
                self.num_abandoned += 1

    async def generate_packed(
        self, request: GenerateRequest, caller: Caller | None = None
    ) -> AsyncIterator[bytes]:
        """`generate` with each batch as bytes: what the Router's handle streams."""
        async with aclosing(self.generate(request, caller)) as batches:
            async for batch in batches:
                yield pack(batch)

    def stats(self) -> ReplicaStats:
        return self.engine.stats()

    def num_abandoned_requests(self) -> int:
        return self.num_abandoned

    def num_orphans_aborted(self) -> int:
        """Requests aborted because their caller (a Router replica) died."""
        return self.callers.num_orphans_aborted

    def record_routing_stats(self) -> dict[str, Any]:
        """A RoutingStats as a dict: Serve's contract (router/routing_stats.py says why)."""
        version = self._adapter_sync.version if self._adapter_sync else 0
        return RoutingStats.of(self.engine.stats(), adapter_version=version).to_dict()

    def check_health(self) -> None:
        if not self.engine.is_alive:
            raise RuntimeError("the engine loop died; Serve restarts this replica")

    # -- adapters (the engine API from the multi-LoRA work) -------------------------------------

    async def load_adapter(self, name: str, path: str, pinned: bool = False) -> AdapterInfo:
        """Raises AdapterLoadError (400) or AdapterNotFoundError (no LoRA configured)."""
        info = await self.engine.load_adapter(name, path, pinned=pinned)
        if self._adapter_sync is not None:
            self._adapter_sync.note_loaded(name, path)
        return info

    async def unload_adapter(self, name: str) -> None:
        await self.engine.unload_adapter(name)

    def list_adapters(self) -> list[AdapterInfo]:
        return self.engine.list_adapters()

    # -- housekeeping ---------------------------------------------------------------------------

    async def _export_stats(self) -> None:
        while True:
            s = self.engine.stats()
            record = self._metrics.record
            record("tandem:engine_num_requests_running", s.num_running, self._tags)
            record("tandem:engine_num_requests_waiting", s.num_waiting, self._tags)
            record("tandem:kv_cache_usage_perc", s.kv_usage, self._tags)
            record("tandem:prefix_cache_hit_rate", s.prefix_cache_hit_rate, self._tags)
            record("tandem:num_preemptions", s.num_preemptions, self._tags)
            await asyncio.sleep(STATS_PERIOD_S)

    def __del__(self) -> None:
        for task in getattr(self, "_tasks", ()):
            task.cancel()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
