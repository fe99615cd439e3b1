"""The RayService's serveConfigV2: config.gpu.yaml plus what autoscaling needs, nothing else.

Two additions, both derived from k8s/cluster.yaml's llm_autoscaling:
- a `deployments` override giving LLMServer a Serve autoscaling_config (its initial_replicas is
  the config's llm.num_replicas), and
- `router.max_running` = max_replicas x max_num_seqs when the config leaves it unset, since
  the app builder sizes the Router's admission from llm.num_replicas, which autoscaling outgrows.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from deployments.app import AppArgs
from k8s.settings import LLMAutoscaling

APP_IMPORT_PATH = "deployments.app:build_app"
LLM_DEPLOYMENT = "LLMServer"


def load_serve_config(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read the Serve config {path}: {e}") from e


def tandem_app(config: dict[str, Any]) -> dict[str, Any]:
    """The one application built by deployments.app:build_app."""
    apps = [a for a in config.get("applications", []) if a.get("import_path") == APP_IMPORT_PATH]
    if len(apps) != 1:
        raise ValueError(f"the Serve config needs exactly one application of {APP_IMPORT_PATH}")
    return apps[0]


def serve_config_v2(base: dict[str, Any], autoscaling: LLMAutoscaling) -> dict[str, Any]:
    config = copy.deepcopy(base)
    app = tandem_app(config)
    args = AppArgs.model_validate(app.get("args") or {})
    app["deployments"] = [llm_deployment_override(autoscaling, args.llm.num_replicas)]
    router = app.setdefault("args", {}).setdefault("router", {})
    if router.get("max_running") is None:
        router["max_running"] = autoscaling.max_replicas * args.llm.engine.max_num_seqs
    return config


def llm_deployment_override(autoscaling: LLMAutoscaling, initial_replicas: int) -> dict[str, Any]:
    return {
        "name": LLM_DEPLOYMENT,
        "num_replicas": "auto",
        "autoscaling_config": {
            "min_replicas": autoscaling.min_replicas,
            "initial_replicas": initial_replicas,
            "max_replicas": autoscaling.max_replicas,
            "target_ongoing_requests": autoscaling.target_ongoing_requests,
            "upscale_delay_s": autoscaling.upscale_delay_s,
            "downscale_delay_s": autoscaling.downscale_delay_s,
        },
    }
