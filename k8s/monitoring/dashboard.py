"""The Grafana dashboard JSON (k8s/monitoring/tandem-dashboard.json) built from panels.py."""

from __future__ import annotations

from typing import Any

from k8s.monitoring.panels import ROWS, Panel

UID = "tandem-overview"
TITLE = "Tandem"
PANEL_WIDTH = 8  # three panels per 24-column row
PANEL_HEIGHT = 8
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append(_row(row.title, len(panels) + 1, y))
        y += 1
        for i, panel in enumerate(row.panels):
            gridpos = {
                "x": (i % 3) * PANEL_WIDTH,
                "y": y + (i // 3) * PANEL_HEIGHT,
                "w": PANEL_WIDTH,
                "h": PANEL_HEIGHT,
            }
            panels.append(_timeseries(panel, len(panels) + 1, gridpos))
        y += PANEL_HEIGHT * ((len(row.panels) + 2) // 3)
    return {
        "uid": UID,
        "title": TITLE,
        "description": "Tandem on Ray Serve: latency, throughput, load, adapters, speculation.",
        "tags": ["tandem", "llm", "ray-serve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        _label_variable("application", "ray_serve_deployment_replica_healthy", "Serve app"),
        _label_variable("model", "ray_tandem_generation_tokens_total", "Model"),
    ]


def _label_variable(name: str, metric: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f"label_values({metric}, {name})", "refId": f"{name}-values"},
        "definition": f"label_values({metric}, {name})",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def _row(title: str, panel_id: int, y: int) -> dict[str, Any]:
    return {
        "type": "row",
        "id": panel_id,
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _timeseries(panel: Panel, panel_id: int, gridpos: dict[str, int]) -> dict[str, Any]:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if panel.stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries",
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": gridpos,
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": True,
            }
            for i, query in enumerate(panel.queries)
        ],
    }


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of a dashboard JSON."""
    return [
        (p["title"], t["expr"])
        for p in board["panels"]
        if p.get("type") != "row"
        for t in p.get("targets", [])
    ]
