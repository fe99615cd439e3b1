"""A Router replica's side of the adapter control plane (deployments/adapter_control.py).

`RemoteAdapterControl` sends load / unload to the AdapterControl deployment (its errors come
back as the APIErrors it raised). `AdapterMirror` keeps this replica's copy of the desired
set current by long-polling it, so an adapter loaded through another Router replica resolves
here within one poll's round trip (the poll returns as soon as the set changes).
"""

from __future__ import annotations

import asyncio
import logging

from ray.serve.handle import DeploymentHandle

from deployments.serve_backend import tandem_error
from router.adapter_catalog import AdapterCatalog, AdapterSet

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10.0
RETRY_S = 1.0


class RemoteAdapterControl:
    """AdapterControl (router/adapter_control.py) over the control plane's handle."""

    def __init__(self, control: DeploymentHandle) -> None:
        self._control = control

    async def load(self, name: str, path: str, replace: bool) -> AdapterSet:
        try:
            return await self._control.load.remote(name, path, replace)
        except Exception as e:
            raise tandem_error(e) from None

    async def unload(self, name: str) -> AdapterSet:
        try:
            return await self._control.unload.remote(name)
        except Exception as e:
            raise tandem_error(e) from None


class AdapterMirror:
    def __init__(self, control: DeploymentHandle, catalog: AdapterCatalog) -> None:
        self._control = control
        self.catalog = catalog

    async def run(self) -> None:
        while True:
            try:
                known = self.catalog.snapshot()
                desired = await self._control.watch.remote(
                    known.version, POLL_TIMEOUT_S, dict(known.adapters)
                )
                # the control plane is the authority: follow it even backwards (restarted)
                self.catalog.adopt(desired, newer_only=False)
            except asyncio.CancelledError:
                raise
            except Exception:  # the control plane may be (re)starting: try again shortly
                logger.warning("adapter mirror poll failed", exc_info=True)
                await asyncio.sleep(RETRY_S)
