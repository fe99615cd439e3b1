"""A replica follows the cluster's desired adapter set: it long-polls the control plane
(deployments/adapter_control.py) and loads or unloads the difference, so replicas that start
later serve the same adapters. Each poll also tells the control plane which version this
replica holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ray import serve

from router.adapter_catalog import AdapterSet, plan_sync

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10.0
RETRY_S = 1.0
FIRST_SYNC_WAIT_S = 10.0  # the most an adapter request waits for a new replica's first sync


class AdapterSync:
    def __init__(
        self, server: Any, control_plane: str, replica: tuple[str, str] | None = None
    ) -> None:
        """`server` has async load_adapter(name, path) / unload_adapter(name). `replica`:
        (app name, replica id); default this Serve replica's."""
        if replica is None:
            context = serve.get_replica_context()
            replica = (context.app_name, context.replica_id.unique_id)
        self._server = server
        self._control_plane = control_plane
        self._app_name, self.replica_id = replica
        self.version = 0
        self.applied: dict[str, str] = {}
        self._first_sync = asyncio.Event()  # set once the desired set was applied

    async def ready(self, timeout_s: float = FIRST_SYNC_WAIT_S) -> None:
        """Return once this replica applied the desired set (at once after the first
        time), or after `timeout_s`: a replica that just started, and that Serve already
        routes to, must not answer an adapter it is about to load with a 404."""
        if not self._first_sync.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_sync.wait(), timeout_s)

    def note_loaded(self, name: str, path: str) -> None:
        """An adapter loaded directly (the control plane's trial load) is already in place."""
        self.applied[name] = path

    async def run(self) -> None:
        control = serve.get_deployment_handle(self._control_plane, self._app_name)
        while True:
            try:
                desired = await control.adapter_updates.remote(
                    self.version, self.replica_id, POLL_TIMEOUT_S, dict(self.applied)
                )
                await self.apply(desired)
            except asyncio.CancelledError:
                raise
            except Exception:  # the control plane may be restarting: try again shortly
                logger.exception("adapter sync with %s failed", self._control_plane)
                await asyncio.sleep(RETRY_S)

    async def apply(self, desired: AdapterSet) -> None:
        plan = plan_sync(self.applied, desired.adapters)
        for name in plan.unload:
            with contextlib.suppress(ValueError):  # already gone
                await self._server.unload_adapter(name)
            self.applied.pop(name, None)
        for name, path in plan.load:
            try:
                await self._server.load_adapter(name, path)
                self.applied[name] = path
            except ValueError:  # the trial load passed; log and keep serving
                logger.exception("could not load adapter %s from %s", name, path)
        self.version = desired.version
        self._first_sync.set()
