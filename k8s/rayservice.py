"""The RayService manifest: a CPU-only head, GPU worker groups sized by k8s/cluster.yaml,
in-tree autoscaling, and the serveConfigV2 of k8s/serve_config.py."""

from __future__ import annotations

import json
from typing import Any

from k8s.settings import ClusterSettings, HeadGroup, WorkerGroup
from k8s.yaml_io import dump

GPU = "nvidia.com/gpu"
METRICS_PORT = 8080  # KubeRay's default --metrics-export-port
SERVE_PORT = 8000
PART_OF = "app.kubernetes.io/part-of"


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
        _port("dashboard", 8265),
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
        "env": [
            {
                "name": "TANDEM_API_KEYS",
                "valueFrom": {"secretKeyRef": {"name": settings.api_keys_secret, "key": "keys"}},
            }
        ],
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


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU] = gpus
    # requests == limits: Guaranteed QoS, and Ray's view of the pod matches Kubernetes'
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port}
