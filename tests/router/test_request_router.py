"""TandemRequestRouter (the Ray adapter) over fake replicas: ranks from routing stats,
in-flight counts from routing callbacks, prefix affinity remembered per replica."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

from ray.serve.request_router import PendingRequest, ReplicaID, ReplicaResult

from router.request_router import TandemRequestRouter
from router.routing_stats import RoutingStats
from workers.protocol import GenerateRequest


@dataclass
class FakeReplica:
    name: str
    routing_stats: dict = field(default_factory=dict)

    @property
    def replica_id(self) -> ReplicaID:
        return cast(ReplicaID, SimpleNamespace(unique_id=self.name))  # what the router reads


# Stand-ins with the fields the router reads, typed as Serve's; it never reads the result.
NO_RESULT = cast(ReplicaResult, None)


def pending(prompt: tuple[int, ...], adapter: str | None = None, rid: str = "1") -> PendingRequest:
    request = GenerateRequest(f"r{rid}", prompt, adapter=adapter)
    return cast(
        PendingRequest,
        SimpleNamespace(
            args=[request], kwargs={}, metadata=SimpleNamespace(internal_request_id=rid)
        ),
    )


def make_router() -> TandemRequestRouter:
    router = object.__new__(TandemRequestRouter)  # Serve's constructor needs a live cluster
    router.initialize_state(prefix_chunk_tokens=4)
    return router


def choose(router, replicas, request) -> list[list[str]]:
    ranks = asyncio.run(router.choose_replicas(replicas, request))
    return [[r.name for r in rank] for rank in ranks]


def stats(running: int = 0, adapters: tuple[str, ...] = ()) -> dict:
    """What Serve hands the router: the replica's `record_routing_stats()` dict."""
    return RoutingStats(90, 100, running, 0, resident_adapters=adapters).to_dict()


def test_adapter_residency_then_load_from_routing_stats() -> None:
    replicas = [FakeReplica("a", stats(0)), FakeReplica("b", stats(2, ("sql",))), FakeReplica("c")]
    assert choose(make_router(), replicas, pending((1, 2, 3), "sql"))[0] == ["b"]
    assert sorted(choose(make_router(), replicas, pending((1, 2, 3)))[0]) == ["a", "c"]


def test_routed_requests_count_until_completed_and_build_prefix_affinity() -> None:
    router = make_router()
    replicas = [FakeReplica("a", stats()), FakeReplica("b", stats())]
    shared = (9, 9, 9, 9, 8, 8, 8, 8)
    first = pending((*shared, 1), rid="1")
    choose(router, replicas, first)
    router.on_request_routed(first, replicas[1].replica_id, NO_RESULT)
    # same prefix: back to b, where its KV blocks are cached
    assert choose(router, replicas, pending((*shared, 2), rid="2"))[0] == ["b"]
    for i in range(6):  # b gets busy: affinity yields to the idle replica
        router.on_request_routed(pending((i,), rid=f"x{i}"), replicas[1].replica_id, NO_RESULT)
    assert choose(router, replicas, pending((*shared, 3), rid="3"))[0][0] == "a"
    for i in range(6):
        router.on_request_completed(replicas[1].replica_id, f"x{i}")
    assert choose(router, replicas, pending((*shared, 4), rid="4"))[0] == ["b"]


def test_calls_without_a_generate_request_are_ranked_by_load() -> None:
    replicas = [FakeReplica("a", stats(3)), FakeReplica("b", stats(1))]
    assert choose(make_router(), replicas, None) == [["b", "a"]]
