"""Replica choice from fake replica stats: adapters, load, hot adapters, prefix affinity."""

from __future__ import annotations

from router.prefix_affinity import PrefixAffinity
from router.replica_choice import ReplicaLoad, RoutingPolicy


def replica(rid: str, running: int = 0, free: int = 100, adapters=(), in_flight: int = 0):
    return ReplicaLoad(rid, free, 100, running, 0, frozenset(adapters), in_flight)


def flat(ranks: list[list[str]]) -> list[str]:
    return [r for rank in ranks for r in rank]


def test_least_loaded_first_then_free_kv() -> None:
    ranks = RoutingPolicy().rank([replica("a", 5), replica("b", 1), replica("c", 1, free=10)])
    assert flat(ranks) == ["b", "c", "a"]
    assert all(len(rank) <= 2 for rank in ranks)


def test_adapter_requests_go_where_the_adapter_is_resident() -> None:
    replicas = [replica("a"), replica("b", 3, adapters={"sql"}), replica("c")]
    assert RoutingPolicy().rank(replicas, adapter="sql")[0] == ["b"]


def test_a_hot_adapter_spreads_to_other_replicas() -> None:
    replicas = [replica("a", 1), replica("b", 9, adapters={"sql"})]
    assert flat(RoutingPolicy(hot_queue_depth=8).rank(replicas, adapter="sql")) == ["a", "b"]


def test_router_in_flight_counts_cover_stale_stats() -> None:
    replicas = [replica("a", in_flight=6), replica("b", 2)]
    assert flat(RoutingPolicy().rank(replicas)) == ["b", "a"]


def test_full_kv_replicas_go_last() -> None:
    replicas = [replica("a", 0, free=1), replica("b", 3)]
    assert flat(RoutingPolicy().rank(replicas)) == ["b", "a"]


def test_prefix_affinity_wins_unless_its_replica_is_much_busier() -> None:
    policy = RoutingPolicy(affinity_slack=2)
    replicas = [replica("a", 0), replica("b", 2)]
    assert policy.rank(replicas, affinity="b")[0] == ["b"]
    busy = [replica("a", 0), replica("b", 5)]
    assert policy.rank(busy, affinity="b")[0][0] == "a"


def test_prefix_affinity_remembers_longest_shared_prefix_per_adapter() -> None:
    table = PrefixAffinity(chunk_tokens=4)
    system = list(range(100, 112))
    table.record(table.keys([*system, 1, 2, 3, 4], None), "a")
    table.record(table.keys(system[:4] + [9] * 8, None), "b")
    match = table.lookup(table.keys([*system, 7, 7, 7, 7], None), {"a", "b"})
    assert match is not None and (match.replica_id, match.num_tokens) == ("a", 12)
    assert table.lookup(table.keys(system, "sql"), {"a", "b"}) is None  # other adapter
    match = table.lookup(table.keys(system, None), {"b"})
    assert match is not None and match.replica_id == "b"  # a is gone
    assert table.lookup(table.keys([1, 2], None), {"a"}) is None  # shorter than a chunk


def test_prefix_affinity_is_bounded() -> None:
    table = PrefixAffinity(chunk_tokens=1, capacity=3)
    table.record(table.keys([1, 2, 3, 4, 5], None), "a")
    assert table.lookup(table.keys([1], None), {"a"}) is None  # evicted (oldest)
    assert table.lookup(table.keys([1, 2, 3, 4, 5], None), {"a"}) is not None
