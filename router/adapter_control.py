"""The cluster's adapter control plane: who changes the desired adapter set, and how.

`AdapterControlPlane` owns the AdapterCatalog (the desired set, its versions, the replicas'
acks): a load is tried on one replica first (a broken adapter is refused before it joins the
set), then added, then waited for until the replicas that poll the catalog hold it. In a
cluster it runs in a deployment of its own (deployments/adapter_control.py), off the data
path, so any number of Router replicas can share it; a Router keeps a mirror of the desired
set for name resolution and /v1/models. In-process (tests, demos) the service uses one
directly over its backend.
"""

from __future__ import annotations

from typing import Protocol

from router.adapter_catalog import AdapterCatalog, AdapterSet
from router.errors import APIError, bad_request


class AdapterControl(Protocol):
    """What the OpenAI service needs to change the cluster's adapters."""

    async def load(self, name: str, path: str, replace: bool) -> AdapterSet:
        """Add (or with `replace`, swap) an adapter; the desired set that holds it. Raises
        an APIError: 400 for a bad name, path or adapter, or a loaded name without replace."""
        ...

    async def unload(self, name: str) -> AdapterSet:
        """Remove an adapter (404 if not loaded); the desired set without it."""
        ...


class AdapterReplicas(Protocol):
    """The replicas as the control plane drives them."""

    async def try_adapter(self, name: str, path: str) -> None:
        """Load a new adapter on one replica, raising its AdapterLoadError (a ValueError)."""
        ...

    async def sync_adapters(self, desired: AdapterSet) -> None:
        """Return once replicas hold `desired` (or after a bounded wait; replicas that
        lag converge on their own)."""
        ...


class AdapterControlPlane:
    def __init__(self, catalog: AdapterCatalog, replicas: AdapterReplicas) -> None:
        self.catalog = catalog
        self._replicas = replicas

    async def load(self, name: str, path: str, replace: bool) -> AdapterSet:
        if name in self.catalog and not replace:
            raise bad_request(
                f"the adapter {name!r} is already loaded; unload it first, or set "
                "load_inplace: true to replace it",
                "lora_name",
            )
        resolved = self.catalog.check(name, path)
        try:
            await self._replicas.try_adapter(name, resolved)
        except APIError:
            raise
        except ValueError as e:  # AdapterLoadError: the adapter at lora_path is unusable
            raise bad_request(f"cannot load the adapter: {e}", "lora_path") from e
        desired = self.catalog.add(name, resolved)
        await self._replicas.sync_adapters(desired)
        return desired

    async def unload(self, name: str) -> AdapterSet:
        desired = self.catalog.remove(name)
        await self._replicas.sync_adapters(desired)
        return desired
