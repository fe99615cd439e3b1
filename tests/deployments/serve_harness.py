"""Start the Tandem app on a local Ray cluster (one per test module) for the openai client."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import ray
from ray import serve

from deployments.app import AppArgs, build_app
from deployments.proxy_edge import PROXY_CALLBACK, PROXY_CALLBACK_ENV

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
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set (Ray processes started inside inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def running_app(
    app_args: dict[str, Any],
    init: dict[str, Any] | None = None,
    proxy_env: Mapping[str, str] | None = None,
) -> Iterator[ServedApp]:
    """serve.run the app; `init` are ray.init kwargs (e.g. address= of a Cluster). The proxy
    gets the edge limits as `make serve` and k8s give it (deployments/proxy_edge.py), with
    `proxy_env` (e.g. TANDEM_BODY_TIMEOUT_S) added: it inherits the environment of ray.init."""
    port = free_port()
    env = {PROXY_CALLBACK_ENV: PROXY_CALLBACK, **(proxy_env or {})}
    with environment(env):
        ray.init(**(init or {"num_cpus": 2}), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(AppArgs.model_validate(app_args)), name=APP, route_prefix="/")
        yield ServedApp(f"http://127.0.0.1:{port}")
    finally:
        serve.shutdown()
        ray.shutdown()


def completion_burst(
    app: ServedApp, count: int, prompt: str, model: str
) -> tuple[list[tuple[float, Any]], list[tuple[float, Any]]]:
    """`count` greedy 40-token completions at once: (accepted, refused with 429), each as
    (seconds until answered, the completion or the error)."""

    async def one(client: openai.AsyncOpenAI) -> tuple[str, float, Any]:
        start = time.monotonic()
        try:
            out = await client.completions.create(
                model=model,
                prompt=prompt,
                max_tokens=40,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            return "ok", time.monotonic() - start, out
        except openai.RateLimitError as e:
            return "429", time.monotonic() - start, e

    async def main() -> list[tuple[str, float, Any]]:
        client = app.async_client()
        return await asyncio.gather(*(one(client) for _ in range(count)))

    results = asyncio.run(main())
    accepted = [(seconds, out) for kind, seconds, out in results if kind == "ok"]
    refused = [(seconds, out) for kind, seconds, out in results if kind == "429"]
    return accepted, refused


async def streams_cut_off(
    app: ServedApp,
    model: str,
    prompts: list[str],
    max_tokens: int,
    settle_s: float,
    cut: Callable[[], Awaitable[None]],
) -> list[tuple[float, str]]:
    """Greedy streamed completions of `prompts`; once every one has sent data and `settle_s`
    more went by, `cut()` (a fault). Per stream: seconds from `cut` returning to the
    stream's end, and its last `data:` payload."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=app.base_url, timeout=60) as client:
        started = [asyncio.Event() for _ in prompts]

        async def watch(prompt: str, started: asyncio.Event) -> tuple[float, str]:
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
            body |= {"stream": True, "ignore_eos": True, "temperature": 0}
            async with client.stream("POST", "/v1/completions", json=body, headers=headers) as r:
                last = ""
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        started.set()
                        last = line[6:]
                started.set()  # a stream that ended without data must not hold the cut back
                return time.monotonic(), last

        streams = [asyncio.create_task(watch(p, e)) for p, e in zip(prompts, started, strict=True)]
        await asyncio.gather(*(e.wait() for e in started))
        await asyncio.sleep(settle_s)
        await cut()
        cut_at = time.monotonic()
        ends = await asyncio.gather(*streams)
        return [(end - cut_at, last) for end, last in ends]
