"""RoutingStats: what an LLMServer replica reports for TandemRequestRouter to choose by.

Serve's contract: a deployment's `record_routing_stats()` returns a dict, which Serve's
controller fetches and hands to the request router as `RunningReplica.routing_stats`. The
controller unpickles it and may not have Tandem's code on its path, so the dict holds only
builtins: `to_dict()` on the replica, `from_dict()` on the router; neither side spells keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from workers.protocol import ReplicaStats


@dataclass(frozen=True)
class RoutingStats:
    """Every field has a default: a replica reports nothing until its first period ends."""

    num_free_blocks: int = 0
    num_total_blocks: int = 0
    num_running: int = 0
    num_waiting: int = 0
    resident_adapters: tuple[str, ...] = ()  # adapters in a device slot
    spec_acceptance_rate: float = 0.0
    adapter_version: int = 0  # the replica's AdapterSync version (0: no runtime adapters)

    @classmethod
    def of(cls, stats: ReplicaStats, adapter_version: int = 0) -> RoutingStats:
        return cls(
            num_free_blocks=stats.num_free_blocks,
            num_total_blocks=stats.num_total_blocks,
            num_running=stats.num_running,
            num_waiting=stats.num_waiting,
            resident_adapters=tuple(stats.resident_adapters),
            spec_acceptance_rate=stats.spec_acceptance_rate,
            adapter_version=adapter_version,
        )

    def to_dict(self) -> dict[str, Any]:
        """Builtins only (tuples as lists), keyed by field name."""
        return {
            f.name: list(value) if isinstance(value, tuple) else value
            for f in fields(self)
            for value in (getattr(self, f.name),)
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RoutingStats:
        """The inverse of `to_dict`. Missing keys take their defaults (nothing reported yet,
        or a replica of an older version); keys this version does not know are ignored."""
        raw = raw or {}
        values = {
            f.name: type(cast(Any, f.default))(raw[f.name])  # int, float or tuple: its default's
            for f in fields(cls)
            if f.name in raw
        }
        return cls(**values)
