"""Tandem's Ray Serve RequestRouter for LLMServer handles: the one router/ module that
imports Ray. It adapts Ray's replica objects to router/replica_choice.py and keeps the
router-local state (in-flight counts, prefix affinity) between requests.

Configure it on the LLMServer deployment:
    request_router_config=RequestRouterConfig(
        request_router_class="router.request_router:TandemRequestRouter", ...)
Replica stats come from `LLMServer.record_routing_stats()`, as a RoutingStats dict.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    ReplicaResult,
    RequestRouter,
    RunningReplica,
)

from router.prefix_affinity import PrefixAffinity
from router.replica_choice import ReplicaLoad, RoutingPolicy
from router.routing_stats import RoutingStats
from workers.protocol import GenerateRequest


class TandemRequestRouter(FIFOMixin, RequestRouter):
    def initialize_state(
        self,
        hot_queue_depth: int = 8,
        affinity_slack: int = 4,
        prefix_chunk_tokens: int = 16,
        **_: Any,
    ) -> None:
        """Called by Serve with the deployment's `request_router_kwargs`."""
        self._policy = RoutingPolicy(hot_queue_depth=hot_queue_depth, affinity_slack=affinity_slack)
        self._affinity = PrefixAffinity(chunk_tokens=prefix_chunk_tokens)
        self._in_flight: Counter[str] = Counter()
        self._prefix_keys: dict[str, list[int]] = {}

    def _ensure_state(self) -> None:
        if not hasattr(self, "_policy"):  # initialize_state is optional in Serve
            self.initialize_state()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        self._ensure_state()
        if not candidate_replicas:
            return []
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        loads = [
            ReplicaLoad.from_stats(
                rid, RoutingStats.from_dict(r.routing_stats), self._in_flight[rid]
            )
            for rid, r in by_id.items()
        ]
        request = _generate_request(pending_request)
        adapter = request.adapter if request is not None else None
        affinity = None
        if request is not None and pending_request is not None:
            keys = self._affinity.keys(request.prompt_token_ids, adapter)
            self._prefix_keys[pending_request.metadata.internal_request_id] = keys
            match = self._affinity.lookup(keys, set(by_id))
            affinity = match.replica_id if match is not None else None
        ranks = self._policy.rank(loads, adapter=adapter, affinity=affinity)
        return [[by_id[rid] for rid in rank] for rank in ranks]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: ReplicaResult
    ) -> None:
        self._ensure_state()
        rid = replica_id.unique_id
        self._in_flight[rid] += 1
        keys = self._prefix_keys.pop(pending_request.metadata.internal_request_id, None)
        if keys:
            self._affinity.record(keys, rid)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        self._ensure_state()
        rid = replica_id.unique_id
        self._in_flight[rid] = max(0, self._in_flight[rid] - 1)
        self._prefix_keys.pop(internal_request_id, None)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._ensure_state()
        self._affinity.forget_replica(replica_id.unique_id)
        self._in_flight.pop(replica_id.unique_id, None)


def _generate_request(pending: PendingRequest | None) -> GenerateRequest | None:
    if pending is None:
        return None
    for arg in (*pending.args, *pending.kwargs.values()):
        if isinstance(arg, GenerateRequest):
            return arg
    return None
