"""k8s/cluster.yaml: what the RayService needs besides the Serve config (pydantic, every field
described). The Serve side (models, engine, replicas' Ray options) stays in config.gpu.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PodSize(_Strict):
    cpu: int = Field(ge=1, description="CPU cores: pod request = limit = Ray num-cpus.")
    memory: str = Field(description="Pod memory request = limit, e.g. 64Gi.")


class HeadGroup(PodSize):
    """The head runs the GCS, the Serve controller and an HTTP proxy, and no replica: Ray sees
    0 CPUs and 0 GPUs on it, so nothing that reserves either is scheduled there."""


class WorkerGroup(PodSize):
    name: str = Field(description="groupName of the worker group.")
    gpus_per_pod: int = Field(ge=1, description="nvidia.com/gpu request = limit = num-gpus.")
    min_replicas: int = Field(ge=0, description="Fewest pods the autoscaler keeps.")
    max_replicas: int = Field(ge=1, description="Most pods the autoscaler starts.")
    replicas: int = Field(ge=0, description="Pods at creation.")
    custom_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources of each pod (rayStartParams)."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes nodeSelector of the pods."
    )


class LLMAutoscaling(_Strict):
    """Serve autoscaling of LLMServer (autoscaling_config); its initial_replicas is
    config.gpu.yaml's llm.num_replicas."""

    min_replicas: int = Field(1, ge=0, description="Fewest LLMServer replicas.")
    max_replicas: int = Field(ge=1, description="Most LLMServer replicas (GPU budget!).")
    target_ongoing_requests: float = Field(
        gt=0, description="Requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(30, ge=0, description="Sustained load before scaling up.")
    downscale_delay_s: float = Field(600, ge=0, description="Sustained idle before scaling down.")


class Monitoring(_Strict):
    pod_monitor_labels: dict[str, str] = Field(
        default_factory=lambda: {"release": "prometheus"},
        description="Labels the Prometheus operator's podMonitorSelector matches.",
    )
    scrape_interval: str = Field("15s", description="Scrape interval of the Ray metrics port.")
    dashboard_labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the Grafana dashboard sidecar looks for on ConfigMaps.",
    )


class Network(_Strict):
    """Who may reach the Ray pods (the NetworkPolicy of k8s/network_policy.py). Between Ray
    pods everything is open (Ray picks worker ports itself); from outside, only Serve's port."""

    operator_namespace: str = Field(
        description="Namespace of the KubeRay operator, which calls the dashboard (8265)."
    )
    operator_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "kuberay-operator"},
        description="Labels of the KubeRay operator's pods.",
    )
    prometheus_namespace: str = Field(
        "monitoring", description="Namespace of Prometheus, which scrapes the metrics port."
    )


class ClusterSettings(_Strict):
    name: str = Field(description="RayService name; also the pods' part-of label.")
    namespace: str = Field(description="Namespace of every manifest.")
    image: str = Field(description="Image built from k8s/Dockerfile.")
    ray_version: str = Field(description="Ray version of the image (rayVersion).")
    models_pvc: str = Field(description="PVC with the model directories, mounted at /models.")
    models_mount: str = Field("/models", description="Where the models PVC is mounted.")
    api_keys_secret: str = Field(description="Secret whose `keys` holds TANDEM_API_KEYS.")
    ray_auth_secret: str = Field(
        description="Secret whose `auth_token` is Ray's cluster token (RAY_AUTH_TOKEN): "
        "every Ray API, the dashboard's Jobs API included, demands it; KubeRay uses it too."
    )
    network: Network = Field(description="The NetworkPolicy of the Ray pods.")
    serve_config: str = Field("config.gpu.yaml", description="Serve config, repo-relative.")
    head: HeadGroup = Field(description="The head pod.")
    llm_workers: WorkerGroup = Field(description="GPU pods for LLMServer replicas and the Router.")
    draft_workers: WorkerGroup | None = Field(
        None, description="GPU pods for DraftServer (custom resource `draft`); None: none."
    )
    llm_autoscaling: LLMAutoscaling = Field(description="Serve autoscaling of LLMServer.")
    autoscaler_idle_timeout_s: int = Field(
        600, ge=0, description="Ray autoscaler: idle seconds before a worker pod is removed."
    )
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus, Grafana.")


def load_settings(path: Path) -> ClusterSettings:
    try:
        return ClusterSettings.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    except ValidationError as e:
        raise ValueError(f"{path} is invalid:\n{e}") from e
