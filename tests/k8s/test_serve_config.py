"""serveConfigV2: a valid Serve config, importable from this repository, with args the app
builder accepts, and nothing but config.gpu.yaml plus the documented autoscaling additions."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from deployments.app import AppArgs
from deployments.llm_server import LLMServer
from deployments.serve_typing import as_deployment
from k8s.serve_config import APP_IMPORT_PATH
from k8s.settings import load_settings
from tests.k8s.manifests import K8S, REPO, serve_config


def _app(config: dict) -> dict:
    (app,) = config["applications"]
    return app


def test_serve_config_v2_parses_as_a_serve_deploy_config() -> None:
    schema = ServeDeploySchema.model_validate(serve_config())
    assert [a.import_path for a in schema.applications] == [APP_IMPORT_PATH]
    assert schema.http_options.port == 8000


def test_import_paths_exist_in_the_repository() -> None:
    for app in serve_config()["applications"]:
        module_name, attr = app["import_path"].split(":")
        assert (REPO / Path(*module_name.split("."))).with_suffix(".py").is_file()
        assert callable(getattr(importlib.import_module(module_name), attr))


def test_args_validate_against_the_app_builders_model() -> None:
    args = AppArgs.model_validate(_app(serve_config())["args"])
    assert args.llm.engine.device == "cuda"
    with pytest.raises(ValueError, match="extra"):
        AppArgs.model_validate({**_app(serve_config())["args"], "llm_typo": {}})


def test_serve_config_v2_is_config_gpu_yaml_plus_the_autoscaling_additions() -> None:
    """The manifest cannot drift from config.gpu.yaml: take away what the generator adds and
    the two are equal."""
    settings = load_settings(K8S / "cluster.yaml")
    base = yaml.safe_load((REPO / settings.serve_config).read_text())
    deployed = copy.deepcopy(serve_config())
    app = _app(deployed)
    app.pop("deployments")
    base_router = _app(base)["args"].get("router", {})
    if base_router.get("max_running") is None:
        app["args"]["router"].pop("max_running")
    assert deployed == base


def test_llm_server_autoscales_from_the_configured_replica_count() -> None:
    settings = load_settings(K8S / "cluster.yaml")
    app = _app(serve_config())
    args = AppArgs.model_validate(app["args"])
    (override,) = app["deployments"]
    assert override["name"] == as_deployment(LLMServer).name
    assert override["num_replicas"] == "auto"
    scaling = AutoscalingConfig(**override["autoscaling_config"])
    assert scaling.initial_replicas == args.llm.num_replicas
    assert scaling.min_replicas <= scaling.initial_replicas <= scaling.max_replicas
    assert scaling.max_replicas == settings.llm_autoscaling.max_replicas
    assert scaling.target_ongoing_requests is not None
    assert args.llm.max_ongoing_requests is not None  # the k8s config sets it
    assert scaling.target_ongoing_requests <= args.llm.max_ongoing_requests
    # the Router admits enough requests to keep every replica busy at max_replicas
    assert args.router.max_running == scaling.max_replicas * args.llm.engine.max_num_seqs
