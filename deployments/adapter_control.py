"""AdapterControl: the cluster's adapter control plane as a deployment of its own (1 replica).

It owns the desired adapter set (router/adapter_control.py over an AdapterCatalog), off the
data path: LLMServer replicas long-poll `adapter_updates` (deployments/adapter_sync.py) and
report what they hold; Router replicas send `load` / `unload` and long-poll `watch` to keep
their mirror (deployments/adapter_mirror.py). So any number of Router replicas serve the
same adapters, and a replica that starts later, of either kind, catches up on its first poll.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.serve_backend import tandem_error
from router.adapter_catalog import AdapterCatalog, AdapterSet
from router.adapter_control import AdapterControlPlane

NAME = "AdapterControl"
SYNC_WAIT_S = 30.0  # how long load/unload wait for every replica to catch up
ACK_MAX_AGE_S = 25.0  # replicas not heard from for this long are presumed gone
ACK_CHECK_S = 0.05


class ServeAdapterReplicas:
    """The LLMServer deployment as the control plane drives it (AdapterReplicas)."""

    def __init__(self, llm: DeploymentHandle, catalog: AdapterCatalog) -> None:
        self._llm = llm
        self._catalog = catalog

    async def try_adapter(self, name: str, path: str) -> None:
        try:
            await self._llm.load_adapter.remote(name, path)
        except Exception as e:
            raise tandem_error(e) from None

    async def sync_adapters(self, desired: AdapterSet) -> None:
        """Wait (bounded) until every replica that polls the catalog holds `desired`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SYNC_WAIT_S
        while self._catalog.lagging(desired.version, ACK_MAX_AGE_S):
            if loop.time() > deadline:
                return  # the laggards converge on their own when they poll again
            await asyncio.sleep(ACK_CHECK_S)


@serve.deployment(name=NAME)
class AdapterControl:
    def __init__(
        self,
        llm: DeploymentHandle,
        model_name: str,
        roots: list[str],
        preload: dict[str, str],
    ) -> None:
        """`preload`: name -> directory, in the desired set from the start (Router
        replicas seed their mirror with the same, so both start at the same version)."""
        self.catalog = preloaded_catalog(model_name, roots, preload)
        self.plane = AdapterControlPlane(self.catalog, ServeAdapterReplicas(llm, self.catalog))

    async def load(self, name: str, path: str, replace: bool) -> AdapterSet:
        return await self.plane.load(name, path, replace)

    async def unload(self, name: str) -> AdapterSet:
        return await self.plane.unload(name)

    async def adapter_updates(
        self, known_version: int, replica_id: str, timeout_s: float, held: dict[str, str]
    ) -> AdapterSet:
        """Long poll for LLMServer replicas: returns the desired set once it differs from
        `known_version` (or after timeout_s). The call reports what the replica holds."""
        self.catalog.record_ack(replica_id, known_version, held)
        return await self.catalog.wait_changed(known_version, timeout_s)

    async def watch(
        self, known_version: int, timeout_s: float, known: dict[str, str]
    ) -> AdapterSet:
        """Long poll for Router replicas' mirrors (no ack: a Router holds no adapters). A
        mirror ahead of this catalog means this replica restarted and lost its state: the
        mirror's set is adopted, as an LLMServer replica's is (AdapterCatalog.record_ack)."""
        self.catalog.adopt(AdapterSet(known_version, known))
        return await self.catalog.wait_changed(known_version, timeout_s)

    def adapter_status(self) -> dict[str, Any]:
        """The desired set and the version each LLMServer replica reported holding."""
        snapshot = self.catalog.snapshot()
        return {
            "version": snapshot.version,
            "adapters": snapshot.adapters,
            "replicas": self.catalog.replica_versions(),
        }


def preloaded_catalog(model_name: str, roots: list[str], preload: dict[str, str]) -> AdapterCatalog:
    catalog = AdapterCatalog(model_name, roots)
    for name, path in preload.items():
        catalog.add(name, catalog.check(name, path))
    return catalog
