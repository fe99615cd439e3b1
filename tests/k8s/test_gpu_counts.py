"""GPU (and CPU) counts agree between Ray (rayStartParams, ray_actor_options) and Kubernetes
(container requests and limits), and the head holds no replica."""

from __future__ import annotations

import json
import math

from deployments.app import AppArgs
from tests.k8s.manifests import containers, head_group, serve_config, worker_groups

GPU = "nvidia.com/gpu"


def _args() -> AppArgs:
    (app,) = serve_config()["applications"]
    return AppArgs.model_validate(app["args"])


def _ray_resources(group: dict) -> dict[str, float]:
    raw = group["rayStartParams"].get("resources")
    return json.loads(raw.strip('"').replace('\\"', '"')) if raw else {}


def test_the_head_offers_ray_no_cpu_and_no_gpu() -> None:
    head = head_group()
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["num-gpus"] == "0"
    for container in containers(head):
        for amounts in container["resources"].values():
            assert GPU not in amounts


def test_worker_gpus_match_between_ray_and_kubernetes() -> None:
    for group in worker_groups():
        gpus = int(group["rayStartParams"]["num-gpus"])
        (container,) = containers(group)
        assert gpus >= 1
        assert container["resources"]["requests"][GPU] == gpus
        assert container["resources"]["limits"][GPU] == gpus
        assert int(container["resources"]["limits"]["cpu"]) == int(
            group["rayStartParams"]["num-cpus"]
        )


def test_llm_replicas_fit_the_gpu_pods_up_to_serve_max_replicas() -> None:
    args = _args()
    (app,) = serve_config()["applications"]
    max_replicas = app["deployments"][0]["autoscaling_config"]["max_replicas"]
    need = args.llm.ray_actor_options["num_gpus"]
    hosts = [g for g in worker_groups() if not _ray_resources(g)]  # no custom resource asked
    assert need >= 1 and hosts
    capacity = sum(
        math.floor(int(g["rayStartParams"]["num-gpus"]) / need) * g["maxReplicas"] for g in hosts
    )
    assert capacity >= max_replicas
    for group in hosts:
        assert int(group["rayStartParams"]["num-gpus"]) % need == 0  # no stranded GPU


def test_the_draft_server_has_a_gpu_group_with_its_custom_resource() -> None:
    draft = _args().draft
    assert draft.enabled
    wanted = draft.ray_actor_options["resources"]
    groups = [g for g in worker_groups() if _ray_resources(g).keys() >= wanted.keys()]
    assert groups, f"no worker group offers {wanted}"
    for group in groups:
        assert int(group["rayStartParams"]["num-gpus"]) >= draft.ray_actor_options["num_gpus"]
    assert sum(g["maxReplicas"] for g in groups) >= draft.num_replicas
