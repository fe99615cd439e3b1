"""Do the Serve config's Ray resource asks fit the pods of k8s/cluster.yaml? The generator
refuses manifests where a replica could never be scheduled or autoscaling could not reach
its max_replicas."""

from __future__ import annotations

import math
from typing import Any

from deployments.app import AppArgs
from k8s.settings import ClusterSettings, WorkerGroup


def check_budget(args: AppArgs, settings: ClusterSettings) -> list[str]:
    """Problems, each saying what to change; empty when everything fits."""
    problems: list[str] = []
    llm = args.llm.ray_actor_options
    group = settings.llm_workers
    per_pod = replicas_per_pod(llm, group)
    if per_pod == 0:
        problems.append(
            f"an LLMServer replica asks {llm} but a `{group.name}` pod has "
            f"{group.gpus_per_pod} GPU(s) and {group.cpu} CPU(s); raise the pod or lower "
            "llm.ray_actor_options"
        )
    reachable = per_pod * group.max_replicas
    if settings.llm_autoscaling.max_replicas > reachable:
        problems.append(
            f"llm_autoscaling.max_replicas={settings.llm_autoscaling.max_replicas} but "
            f"{group.max_replicas} `{group.name}` pods hold only {reachable} replicas; raise "
            "llm_workers.max_replicas or lower llm_autoscaling.max_replicas"
        )
    router_cpus = float(args.router.ray_actor_options.get("num_cpus", 0))
    spare = group.cpu - per_pod * float(llm.get("num_cpus", 1))
    if router_cpus > spare:
        problems.append(
            f"the Router asks {router_cpus} CPUs; a full `{group.name}` pod has {spare} spare"
        )
    if args.draft.enabled:
        problems += _draft_problems(args.draft.ray_actor_options, args.draft.num_replicas, settings)
    return problems


def replicas_per_pod(actor_options: dict[str, Any], group: WorkerGroup) -> int:
    """How many replicas with these Ray options one pod of the group holds."""
    fits = []
    gpus = float(actor_options.get("num_gpus", 0))
    cpus = float(actor_options.get("num_cpus", 1))
    if gpus:
        fits.append(math.floor(group.gpus_per_pod / gpus + 1e-9))
    if cpus:
        fits.append(math.floor(group.cpu / cpus + 1e-9))
    for name, amount in (actor_options.get("resources") or {}).items():
        fits.append(math.floor(group.custom_resources.get(name, 0) / amount + 1e-9))
    return min(fits) if fits else 1_000_000


def _draft_problems(options: dict[str, Any], replicas: int, settings: ClusterSettings) -> list[str]:
    group = settings.draft_workers
    if group is None:
        return ["draft.enabled is true but cluster.yaml has no draft_workers group"]
    reachable = replicas_per_pod(options, group) * group.max_replicas
    if replicas > reachable:
        return [
            f"{replicas} DraftServer replica(s) asking {options} but `{group.name}` pods hold "
            f"{reachable}; check draft_workers.custom_resources and gpus_per_pod"
        ]
    return []
