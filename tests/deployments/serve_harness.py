"""Start the Tandem app on a local Ray cluster (one per test module) for the openai client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import ray
from ray import serve

from deployments.app import AppArgs, build_app

APP = "tandem"
API_KEY = "test-key"


@dataclass(frozen=True)
class ServedApp:
    base_url: str

    def client(self, api_key: str = API_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0)

    def async_client(self, api_key: str = API_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0)

    def handle(self, deployment: str) -> Any:
        return serve.get_deployment_handle(deployment, APP)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_app_args(model_dir: str, **overrides: Any) -> dict[str, Any]:
    """App args sized for a 2-core CI machine: no CPU reservations, small KV caches."""
    engine = {"num_blocks": 96, "block_size": 4, "max_num_seqs": 4, "max_num_batched_tokens": 256}
    args: dict[str, Any] = {
        "model": model_dir,
        "llm": {"ray_actor_options": {"num_cpus": 0}, "engine": engine},
        "draft": {"enabled": False},
        "router": {"api_keys": [API_KEY], "ray_actor_options": {"num_cpus": 0}},
    }
    for key, value in overrides.items():
        args[key] = {**args.get(key, {}), **value} if isinstance(value, dict) else value
    return args


@contextmanager
def running_app(
    app_args: dict[str, Any], init: dict[str, Any] | None = None
) -> Iterator[ServedApp]:
    """serve.run the app; `init` are ray.init kwargs (e.g. address= of a Cluster)."""
    port = free_port()
    ray.init(**(init or {"num_cpus": 2}), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(AppArgs.model_validate(app_args)), name=APP, route_prefix="/")
        yield ServedApp(f"http://127.0.0.1:{port}")
    finally:
        serve.shutdown()
        ray.shutdown()
