"""The committed manifests are what `python -m k8s.generate` writes, and the generator
refuses settings whose pods could never hold the replicas."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.app import AppArgs
from k8s.budget import check_budget
from k8s.generate import generated_files, main, stale_files
from k8s.settings import load_settings
from tests.k8s.manifests import K8S


def test_committed_manifests_match_the_generator() -> None:
    stale = stale_files(generated_files())
    assert stale == [], "run `python -m k8s.generate` and commit the result"


def test_check_mode_reports_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == ""


def _settings_file(tmp_path: Path, **changes: dict) -> Path:
    data = yaml.safe_load((K8S / "cluster.yaml").read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_autoscaling_beyond_the_gpu_pods_is_refused(tmp_path: Path) -> None:
    path = _settings_file(tmp_path, llm_autoscaling={"max_replicas": 9})
    with pytest.raises(ValueError, match=r"llm_autoscaling\.max_replicas=9 but 4 `gpu` pods"):
        generated_files(path)


def test_a_pod_too_small_for_one_replica_is_refused(tmp_path: Path) -> None:
    settings = load_settings(_settings_file(tmp_path, llm_workers={"cpu": 2}))
    (app,) = yaml.safe_load((K8S.parent / settings.serve_config).read_text())["applications"]
    problems = check_budget(AppArgs.model_validate(app["args"]), settings)
    assert any("raise the pod or lower llm.ray_actor_options" in p for p in problems)
