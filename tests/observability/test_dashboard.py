"""The dashboard asks only for metrics the Serve layer exports, shows every router metric and
what the issue lists, and lays its panels out without overlap."""

from __future__ import annotations

from deployments.metrics import export_name
from k8s.monitoring.dashboard import dashboard, queries
from router.metrics import METRICS, Kind
from tests.observability.promql import expand, metric_names

# Ray Serve's own metrics the dashboard reads (seen on a local cluster's metrics port)
SERVE_METRICS = {"ray_serve_num_http_requests_total", "ray_serve_deployment_replica_healthy"}
SUFFIXES = {Kind.COUNTER: ("",), Kind.GAUGE: ("",), Kind.HISTOGRAM: ("_bucket", "_sum", "_count")}


def exported() -> dict[str, str]:
    """Prometheus series name -> router metric name (Ray adds the `ray_` prefix)."""
    return {
        f"ray_{export_name(name)}{suffix}": name
        for name, (kind, _) in METRICS.items()
        for suffix in SUFFIXES[kind]
    }


def _used() -> set[str]:
    return {m for _, expr in queries(dashboard()) for m in metric_names(expr)}


def test_every_query_reads_exported_metrics_only() -> None:
    unknown = _used() - exported().keys() - SERVE_METRICS
    assert unknown == set()


def test_every_router_metric_has_a_panel() -> None:
    shown = {exported()[m] for m in _used() if m in exported()}
    assert shown == set(METRICS)


def test_the_panels_the_issue_lists_are_there() -> None:
    titles = {title for title, _ in queries(dashboard())}
    assert titles >= {
        "Time to first token",
        "Inter-token latency",
        "Tokens/s",
        "Requests running and waiting",
        "KV cache usage",
        "Requests/s per adapter",
        "Latency per adapter (p95)",
        "Adapter loads",
        "Draft acceptance rate",
        "Healthy replicas",
        "Error rate",
    }


def test_queries_use_only_defined_variables() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]}
    assert defined == {"datasource", "model", "application"}
    for _, expr in queries(board):
        expand(expr)  # fails on a variable the test (and Grafana) would not know
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
