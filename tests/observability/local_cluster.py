"""The Tandem app on an in-process local Ray cluster whose metrics export port is known (so a
test's Prometheus can scrape it), with speculation and adapters on so every panel has data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray import serve

from deployments.app import AppArgs, build_app
from loadtest.cluster import free_port

APP_ARGS: dict[str, Any] = {
    "model": "models/tandem-code-8m",
    "llm": {
        "ray_actor_options": {"num_cpus": 0},
        "engine": {
            "device": "cpu",
            "dtype": "float32",
            "num_blocks": 512,
            "max_num_seqs": 8,
            "max_num_batched_tokens": 512,
            "lora": {"max_loras": 2, "max_lora_rank": 16, "max_cpu_loras": 4},
            # the toy draft accepts little: draft on every step anyway, so the panels have data
            "spec": {
                "draft_model": "models/tandem-code-draft",
                "num_speculative_tokens": 4,
                "min_acceptance": 0.0,
                "throughput_gate": False,
            },
        },
    },
    "draft": {"enabled": False},
    "adapters": {"roots": ["models/adapters"], "preload": {"python-tests": "python-tests"}},
    "router": {
        "ray_actor_options": {"num_cpus": 0},
        "api_keys_env": None,
        "speculation": {"mode": "colocated", "min_acceptance_rate": 0.0},
    },
}


@contextmanager
def serve_with_metrics(metrics_port: int) -> Iterator[str]:
    """Yields the app's base URL; Ray's metrics are at 127.0.0.1:metrics_port."""
    port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _metrics_export_port=metrics_port,
        # metrics reach the export port every second instead of every ten
        _system_config={"metrics_report_interval_ms": 1000},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(AppArgs.model_validate(APP_ARGS)), name="tandem", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
