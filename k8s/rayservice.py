"""The RayService manifest: a CPU-only head, GPU worker groups sized by k8s/cluster.yaml,
in-tree autoscaling, and the serveConfigV2 of k8s/serve_config.py."""

from __future__ import annotations

import json
from typing import Any

from deployments.proxy_edge import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from k8s.settings import ClusterSettings, HeadGroup, WorkerGroup
from k8s.yaml_io import dump

GPU = "nvidia.com/gpu"
METRICS_PORT = 8080  # KubeRay's default --metrics-export-port
SERVE_PORT = 8000
DASHBOARD_PORT = 8265
DASHBOARD_AGENT_PORT = 52365  # KubeRay's default dashboard-agent-listen-port
PART_OF = "app.kubernetes.io/part-of"
RAY_AUTH_TOKEN_KEY = "auth_token"  # the key KubeRay reads from authOptions.secretName


def pod_labels(settings: ClusterSettings) -> dict[str, str]:
    """Labels of every Ray pod (the PodMonitor selects on them)."""
    return {PART_OF: settings.name}


def rayservice(settings: ClusterSettings, serve_config: dict[str, Any]) -> dict[str, Any]:
    workers = [settings.llm_workers]
    if settings.draft_workers is not None:
        workers.append(settings.draft_workers)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": settings.name, "namespace": settings.namespace},
        "spec": {
            "serveConfigV2": dump(serve_config),
            "rayClusterConfig": {
                "rayVersion": settings.ray_version,
                # KubeRay authenticates its own dashboard calls with this Secret's token
                "authOptions": {"mode": "token", "secretName": settings.ray_auth_secret},
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {
                    "upscalingMode": "Default",
                    "idleTimeoutSeconds": settings.autoscaler_idle_timeout_s,
                    "resources": _resources("500m", "512Mi"),
                },
                "headGroupSpec": _head(settings, settings.head),
                "workerGroupSpecs": [_worker(settings, group) for group in workers],
            },
        },
    }


def ray_resources_param(resources: dict[str, float]) -> str:
    """rayStartParams `resources`: a JSON object, quoted and escaped for the `ray start` shell
    command KubeRay builds (the form KubeRay documents: '"{\\"draft\\": 1}"')."""
    amounts = {k: int(v) if float(v).is_integer() else v for k, v in sorted(resources.items())}
    return '"' + json.dumps(amounts).replace('"', '\\"') + '"'


def _head(settings: ClusterSettings, head: HeadGroup) -> dict[str, Any]:
    ports = [
        _port("gcs-server", 6379),
        _port("dashboard", DASHBOARD_PORT),
        _port("client", 10001),
        _port("serve", SERVE_PORT),
        _port("metrics", METRICS_PORT),
    ]
    return {
        # no replica on the head: Ray sees no CPU or GPU there (Serve's controller and proxy
        # reserve none)
        "rayStartParams": {"num-cpus": "0", "num-gpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod(settings, "ray-head", _resources(str(head.cpu), head.memory), ports),
    }


def _worker(settings: ClusterSettings, group: WorkerGroup) -> dict[str, Any]:
    params = {"num-cpus": str(group.cpu), "num-gpus": str(group.gpus_per_pod)}
    if group.custom_resources:
        params["resources"] = ray_resources_param(group.custom_resources)
    resources = _resources(str(group.cpu), group.memory, group.gpus_per_pod)
    ports = [_port("serve", SERVE_PORT), _port("metrics", METRICS_PORT)]
    template = _pod(settings, "ray-worker", resources, ports)
    template["spec"]["tolerations"] = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    if group.node_selector:
        template["spec"]["nodeSelector"] = dict(group.node_selector)
    return {
        "groupName": group.name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": params,
        "template": template,
    }


def _pod(
    settings: ClusterSettings,
    container_name: str,
    resources: dict[str, Any],
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": container_name,
        "image": settings.image,
        "resources": resources,
        "ports": ports,
        "env": _env(settings),
        "volumeMounts": [{"name": "models", "mountPath": settings.models_mount, "readOnly": True}],
    }
    if container_name == "ray-worker":
        container["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}
    return {
        "metadata": {"labels": pod_labels(settings)},
        "spec": {
            "containers": [container],
            "volumes": [
                {
                    "name": "models",
                    "persistentVolumeClaim": {"claimName": settings.models_pvc, "readOnly": True},
                }
            ],
        },
    }


def _env(settings: ClusterSettings) -> list[dict[str, Any]]:
    """Every Ray container's: the API keys (the Router and the proxies refuse requests
    without one), Ray's token auth (set here as well as by KubeRay's authOptions, so the pods
    demand the token whatever the operator's version), and the proxy's edge limits."""
    return [
        _secret_env("TANDEM_API_KEYS", settings.api_keys_secret, "keys"),
        {"name": "RAY_AUTH_MODE", "value": "token"},
        _secret_env("RAY_AUTH_TOKEN", settings.ray_auth_secret, RAY_AUTH_TOKEN_KEY),
        {"name": PROXY_CALLBACK_ENV, "value": PROXY_CALLBACK},  # deployments/proxy_edge.py
    ]


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU] = gpus
    # requests == limits: Guaranteed QoS, and Ray's view of the pod matches Kubernetes'
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port}
