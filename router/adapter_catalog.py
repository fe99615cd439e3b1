"""The cluster's desired set of LoRA adapters, kept by the control plane (and mirrored by
each Router replica, `adopt`).

Replicas converge on it: each one long-polls `wait_changed(version)` and loads/unloads the
difference (`plan_sync`), so a replica that starts later serves the same adapters as the
others. Adapter paths must lie under a configured root; names must be usable as `model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.paths import resolve_adapter_dir
from router.errors import bad_request, not_found
from workers.errors import AdapterLoadError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,127}$")


@dataclass(frozen=True)
class AdapterSet:
    """A version of the desired set: adapter name -> directory (absolute). A copy: safe to
    send to replicas."""

    version: int
    adapters: Mapping[str, str]


@dataclass(frozen=True)
class SyncPlan:
    load: tuple[tuple[str, str], ...]  # (name, path), including path changes
    unload: tuple[str, ...]


def plan_sync(current: Mapping[str, str], desired: Mapping[str, str]) -> SyncPlan:
    """What a replica holding `current` must do to hold `desired`."""
    unload = tuple(n for n in current if n not in desired or current[n] != desired[n])
    load = tuple((n, p) for n, p in desired.items() if current.get(n) != p)
    return SyncPlan(load=load, unload=unload)


class AdapterCatalog:
    def __init__(self, base_model: str, roots: Sequence[str | Path]) -> None:
        self.base_model = base_model
        self.roots = tuple(str(Path(r).resolve()) for r in roots)
        self._adapters: dict[str, str] = {}
        self._version = 0
        self._changed = asyncio.Event()
        self._acks: dict[str, tuple[int, float]] = {}  # replica -> (applied version, when)

    def snapshot(self) -> AdapterSet:
        return AdapterSet(self._version, dict(self._adapters))

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def check(self, name: str, path: str) -> str:
        """Validate a load request; return the adapter's real directory (400 if bad). Paths
        are confined to the roots exactly as the engine confines them."""
        if not _NAME.match(name) or name == self.base_model:
            raise bad_request(
                f"lora_name {name!r} is not usable: use letters, digits and ._-/ "
                f"(no ':') and not the base model's name",
                "lora_name",
            )
        try:
            return str(resolve_adapter_dir(path, self.roots))
        except AdapterLoadError as e:
            raise bad_request(str(e), "lora_path") from e

    def add(self, name: str, resolved_path: str) -> AdapterSet:
        if self._adapters.get(name) != resolved_path:
            self._adapters[name] = resolved_path
            self._bump()
        return self.snapshot()

    def remove(self, name: str) -> AdapterSet:
        if name not in self._adapters:
            raise not_found(f"adapter {name!r} is not loaded", "lora_name", "adapter_not_found")
        del self._adapters[name]
        self._bump()
        return self.snapshot()

    def record_ack(
        self, replica_id: str, applied_version: int, held: Mapping[str, str] | None = None
    ) -> None:
        """A replica reports the version it holds (each poll is a report). A replica ahead
        of this catalog means the router restarted and lost its state: the replica's set is
        adopted, so a restart never unloads adapters from the cluster."""
        self._acks[replica_id] = (applied_version, time.monotonic())
        if held is not None and applied_version > self._version:
            self._adapters = dict(held)
            self._version = applied_version - 1
            self._bump()

    def lagging(self, version: int, max_age_s: float) -> list[str]:
        """Replicas heard from within max_age_s that do not hold `version` yet."""
        now = time.monotonic()
        for replica_id, (_, seen) in list(self._acks.items()):
            if now - seen > max_age_s:
                del self._acks[replica_id]  # gone (or stuck): it re-syncs when it returns
        return sorted(r for r, (v, _) in self._acks.items() if v < version)

    def replica_versions(self) -> dict[str, int]:
        return {replica_id: version for replica_id, (version, _) in self._acks.items()}

    async def wait_changed(self, known_version: int, timeout_s: float) -> AdapterSet:
        """The desired set once its version differs from `known_version` (or at timeout)."""
        if known_version == self._version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
        return self.snapshot()

    def adopt(self, desired: AdapterSet, newer_only: bool = True) -> bool:
        """Mirror a desired set kept elsewhere (the control plane); False if unchanged.
        `newer_only=False` follows an older version too (the control plane restarted)."""
        if desired.version == self._version or (newer_only and desired.version < self._version):
            return False
        self._adapters = dict(desired.adapters)
        self._version = desired.version - 1
        self._bump()
        return True

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()
