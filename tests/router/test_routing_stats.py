"""RoutingStats across Serve's dict: a round trip, defaults before the first report, and
tolerance of a replica of another version."""

from __future__ import annotations

import pickle
from dataclasses import fields

from router.replica_choice import ReplicaLoad
from router.routing_stats import RoutingStats
from workers.protocol import ReplicaStats


def engine_stats() -> ReplicaStats:
    return ReplicaStats(
        num_free_blocks=7,
        num_total_blocks=32,
        num_running=3,
        num_waiting=2,
        prefix_cache_hit_rate=0.5,
        resident_adapters=("sql", "chat"),
        num_preemptions=4,
        spec_acceptance_rate=0.75,
    )


def test_a_replica_report_round_trips_through_a_builtins_only_dict() -> None:
    stats = RoutingStats.of(engine_stats(), adapter_version=5)
    raw = stats.to_dict()
    assert raw == {
        "num_free_blocks": 7,
        "num_total_blocks": 32,
        "num_running": 3,
        "num_waiting": 2,
        "resident_adapters": ["sql", "chat"],
        "spec_acceptance_rate": 0.75,
        "adapter_version": 5,
    }
    assert RoutingStats.from_dict(pickle.loads(pickle.dumps(raw))) == stats


def test_nothing_reported_yet_reads_as_defaults() -> None:
    assert RoutingStats.from_dict({}) == RoutingStats.from_dict(None) == RoutingStats()
    load = ReplicaLoad.from_stats("r", RoutingStats.from_dict({}), in_flight=2)
    assert (load.num_total_blocks, load.queue_depth, load.kv_usage) == (0, 2, 0.0)


def test_another_versions_report_missing_or_extra_keys_still_reads() -> None:
    stats = RoutingStats.from_dict({"num_running": "4", "resident_adapters": ["a"], "new": 1})
    assert stats == RoutingStats(num_running=4, resident_adapters=("a",))


def test_every_field_has_a_default_that_from_dict_can_coerce_to() -> None:
    assert all(type(f.default) in (int, float, tuple) for f in fields(RoutingStats))


def test_the_router_reads_a_report_as_a_replica_load() -> None:
    stats = RoutingStats.from_dict(RoutingStats.of(engine_stats()).to_dict())
    load = ReplicaLoad.from_stats("r", stats, in_flight=1)
    assert load == ReplicaLoad("r", 7, 32, 3, 2, frozenset({"sql", "chat"}), 1)
