"""PodMonitor and dashboard ConfigMap: strict shapes, and they point at the Ray pods and the
dashboard this repository ships."""

from __future__ import annotations

import json

import jsonschema

from k8s.monitoring.dashboard import dashboard
from k8s.monitoring_manifests import DASHBOARD_FILE
from tests.k8s.manifests import K8S, containers, head_group, only, rayservice, worker_groups

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _LABELS},
}
# the subset of monitoring.coreos.com/v1 PodMonitor that we use, closed to unknown keys
POD_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
        "kind": {"enum": ["PodMonitor"]},
        "metadata": _META,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$"},
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}
CONFIG_MAP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "data"],
    "properties": {
        "apiVersion": {"enum": ["v1"]},
        "kind": {"enum": ["ConfigMap"]},
        "metadata": _META,
        "data": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _ray_pods() -> list[dict]:
    return [head_group(), *worker_groups()]


def test_pod_monitor_scrapes_the_metrics_port_of_every_ray_pod() -> None:
    monitor = only("PodMonitor")
    jsonschema.validate(monitor, POD_MONITOR)
    assert monitor["metadata"]["namespace"] == rayservice()["metadata"]["namespace"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for group in _ray_pods():
        labels = group["template"]["metadata"]["labels"]
        assert wanted.items() <= labels.items()
        for container in containers(group):
            named = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports <= named.keys()
            assert named["metrics"] == 8080  # KubeRay's --metrics-export-port


def test_dashboard_config_map_holds_the_shipped_dashboard() -> None:
    config_map = only("ConfigMap")
    jsonschema.validate(config_map, CONFIG_MAP)
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}
    text = config_map["data"][DASHBOARD_FILE]
    assert len(text.encode()) < 1024 * 1024  # a ConfigMap's size limit
    assert json.loads(text) == dashboard()
    assert json.loads((K8S / "monitoring" / DASHBOARD_FILE).read_text()) == dashboard()
