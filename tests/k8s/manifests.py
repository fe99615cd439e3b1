"""The committed manifests of k8s/, loaded (for the tests of tests/k8s)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
MANIFEST_FILES = ("rayservice.yaml", "podmonitor.yaml", "grafana-dashboard-configmap.yaml")


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    docs = []
    for name in MANIFEST_FILES:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return tuple(docs)


def only(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in manifests() if d["kind"] == kind]
    return doc


def rayservice() -> dict[str, Any]:
    return only("RayService")


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(rayservice()["spec"]["serveConfigV2"])


def worker_groups() -> list[dict[str, Any]]:
    return rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]


def head_group() -> dict[str, Any]:
    return rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return group["template"]["spec"]["containers"]
