"""Prometheus scrape (a Prometheus-operator PodMonitor over every Ray pod's metrics port) and
the Grafana dashboard as a ConfigMap for Grafana's dashboard sidecar."""

from __future__ import annotations

import json
from typing import Any

from k8s.rayservice import pod_labels
from k8s.settings import ClusterSettings

DASHBOARD_FILE = "tandem-dashboard.json"


def pod_monitor(settings: ClusterSettings) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"{settings.name}-ray",
            "namespace": settings.namespace,
            "labels": dict(settings.monitoring.pod_monitor_labels),
        },
        "spec": {
            "selector": {"matchLabels": pod_labels(settings)},
            "namespaceSelector": {"matchNames": [settings.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": settings.monitoring.scrape_interval,
                    # Ray labels series with its own node and session; keep the pod too
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_node_type"],
                            "targetLabel": "ray_node_type",
                        },
                    ],
                }
            ],
        },
    }


def dashboard_configmap(settings: ClusterSettings, dashboard: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{settings.name}-grafana-dashboard",
            "namespace": settings.namespace,
            "labels": dict(settings.monitoring.dashboard_labels),
        },
        "data": {DASHBOARD_FILE: dashboard_text(dashboard)},
    }


def dashboard_text(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2) + "\n"
