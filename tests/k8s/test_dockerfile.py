"""The image: the Ray version the manifest declares and this environment runs, the repository
installed so the Serve config's import path resolves, and a context without local clutter."""

from __future__ import annotations

import re

import ray

from tests.k8s.manifests import K8S, containers, head_group, rayservice, worker_groups

DOCKERFILE = (K8S / "Dockerfile").read_text()


def _base_image() -> str:
    (default,) = re.findall(r"^ARG RAY_IMAGE=(\S+)$", DOCKERFILE, flags=re.M)
    assert re.search(r"^FROM \$\{RAY_IMAGE\}$", DOCKERFILE, flags=re.M)
    return default


def test_base_image_ray_version_matches_the_manifest_and_this_environment() -> None:
    image = _base_image()
    version = rayservice()["spec"]["rayClusterConfig"]["rayVersion"]
    assert image.startswith(f"rayproject/ray:{version}-py311-")
    assert version == ray.__version__


def test_image_installs_the_repository_and_checks_the_app_imports() -> None:
    assert re.search(r"^COPY --chown=ray:users \. \.$", DOCKERFILE, flags=re.M)
    assert "pip install --no-cache-dir -e ." in DOCKERFILE
    assert "import deployments.app" in DOCKERFILE


def test_every_ray_container_runs_one_image() -> None:
    images = {c["image"] for g in [head_group(), *worker_groups()] for c in containers(g)}
    assert len(images) == 1


def test_build_context_leaves_out_local_state() -> None:
    ignored = (K8S / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "out"} <= set(ignored)
