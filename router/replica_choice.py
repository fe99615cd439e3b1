"""Replica choice as a pure function of replica stats (the Ray RequestRouter in
router/request_router.py only adapts Ray's types to this).

Order of preference:
1. prefix affinity: the replica that holds the prompt's prefix, unless it is clearly busier
   than the least loaded replica;
2. the request's adapter resident (in a device slot), unless every such replica is hot
   (queue past `hot_queue_depth`): then the adapter spreads to cooler replicas;
3. free KV capacity and queue depth.
The result is ranks of at most two replicas; Ray probes a rank's live queue lengths and falls
through to the next rank when all of its replicas are full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from router.routing_stats import RoutingStats


@dataclass(frozen=True)
class ReplicaLoad:
    replica_id: str
    num_free_blocks: int = 0
    num_total_blocks: int = 0
    num_running: int = 0
    num_waiting: int = 0
    resident_adapters: frozenset[str] = frozenset()
    in_flight: int = 0  # requests this router sent that have not completed

    @classmethod
    def from_stats(cls, replica_id: str, stats: RoutingStats, in_flight: int) -> ReplicaLoad:
        """From an LLMServer's last report (all defaults until its first)."""
        return cls(
            replica_id=replica_id,
            num_free_blocks=stats.num_free_blocks,
            num_total_blocks=stats.num_total_blocks,
            num_running=stats.num_running,
            num_waiting=stats.num_waiting,
            resident_adapters=frozenset(stats.resident_adapters),
            in_flight=in_flight,
        )

    @property
    def kv_usage(self) -> float:
        if self.num_total_blocks <= 0:
            return 0.0
        return 1.0 - self.num_free_blocks / self.num_total_blocks

    @property
    def queue_depth(self) -> int:
        """Requests on the replica: as last reported, or this router's in-flight count when
        that is larger (reports lag by up to a reporting period)."""
        return max(self.num_running + self.num_waiting, self.in_flight)


@dataclass(frozen=True)
class RoutingPolicy:
    hot_queue_depth: int = 8  # an adapter's replica this busy no longer attracts its requests
    affinity_slack: int = 4  # affinity wins unless its replica has this many more queued
    full_kv_usage: float = 0.95  # replicas past this go last

    def rank(
        self,
        replicas: Sequence[ReplicaLoad],
        adapter: str | None = None,
        affinity: str | None = None,
    ) -> list[list[str]]:
        if not replicas:
            return []
        ordered = sorted(replicas, key=self._load_key)
        least = ordered[0].queue_depth
        ranks: list[list[str]] = []
        taken: set[str] = set()
        sticky = next((r for r in replicas if r.replica_id == affinity), None)
        if sticky is not None and sticky.queue_depth <= least + self.affinity_slack:
            ranks.append([sticky.replica_id])
            taken.add(sticky.replica_id)
        if adapter is not None:
            cool = [
                r.replica_id
                for r in ordered
                if adapter in r.resident_adapters
                and r.queue_depth < self.hot_queue_depth
                and r.replica_id not in taken
            ]
            ranks += _pairs(cool)
            taken.update(cool)
        return ranks + _pairs([r.replica_id for r in ordered if r.replica_id not in taken])

    def _load_key(self, r: ReplicaLoad) -> tuple[bool, int, float]:
        return (r.kv_usage >= self.full_kv_usage, r.queue_depth, r.kv_usage)


def _pairs(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + 2] for i in range(0, len(ids), 2)]
