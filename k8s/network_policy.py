"""The NetworkPolicy of the Ray pods: Serve's HTTP port from anywhere; the dashboard and the
dashboard agent from the KubeRay operator only; the metrics port from Prometheus only; and
everything between Ray pods (GCS, raylets, object transfer and workers use ports Ray picks).
The Jobs API (the ShadowRay path, CVE-2023-48022) and the GCS are closed to everyone else,
and Ray's token auth (k8s/rayservice.py) guards them even from inside."""

from __future__ import annotations

from typing import Any

from k8s.rayservice import (
    DASHBOARD_AGENT_PORT,
    DASHBOARD_PORT,
    METRICS_PORT,
    SERVE_PORT,
    pod_labels,
)
from k8s.settings import ClusterSettings

NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label Kubernetes gives every namespace


def network_policy(settings: ClusterSettings) -> dict[str, Any]:
    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: settings.network.operator_namespace}},
        "podSelector": {"matchLabels": dict(settings.network.operator_labels)},
    }
    prometheus = {
        "namespaceSelector": {
            "matchLabels": {NAMESPACE_NAME: settings.network.prometheus_namespace}
        }
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{settings.name}-ray", "namespace": settings.namespace},
        "spec": {
            **_ray_pods(settings),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [_ray_pods(settings)]},
                {"ports": [_tcp(SERVE_PORT)]},  # the OpenAI API (API keys) for any client
                {"from": [operator], "ports": [_tcp(DASHBOARD_PORT), _tcp(DASHBOARD_AGENT_PORT)]},
                {"from": [prometheus], "ports": [_tcp(METRICS_PORT)]},
            ],
        },
    }


def _ray_pods(settings: ClusterSettings) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": pod_labels(settings)}}


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}
