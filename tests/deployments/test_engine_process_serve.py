"""A real Serve app whose replica's engine runs in a process of its own: streams through it
equal the engine alone; when that process is killed (SIGKILL, as the OOM killer would), the
streams in flight end with an error event at once, check_health fails, and Serve's new
replica serves the same output again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import ray

from tests.deployments.engine_faults import engine_core_pid
from tests.deployments.oracle import engine_greedy
from tests.deployments.serve_harness import (
    API_KEY,
    ServedApp,
    running_app,
    small_app_args,
    streams_cut_off,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

MODEL = "tiny-chat"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
PROMPTS = ["def add(a, b):", "class Stack:", "import os\n"]
TOKENS = 200


@pytest.fixture(scope="module")
def app(served_model_dir: Path):
    args = small_app_args(
        str(served_model_dir), llm={"engine_process": True, "health_check_period_s": 1.0}
    )
    with running_app(args) as served:
        yield served


def llm_replica() -> ray.actor.ActorHandle:
    (name,) = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::tandem#LLMServer#")
    ]
    return ray.get_actor(name, namespace="serve")


def completion(app: ServedApp, prompt: str, max_tokens: int) -> httpx.Response:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    body["ignore_eos"] = True
    return httpx.post(f"{app.base_url}/v1/completions", json=body, headers=HEADERS, timeout=60)


def test_streams_equal_the_engine(app: ServedApp, served_model_dir, prompt_tokenizer) -> None:
    for prompt in PROMPTS:
        expected = engine_greedy(served_model_dir, prompt_tokenizer.encode_prompt(prompt), 12)
        out = completion(app, prompt, 12)
        assert out.status_code == 200, out.text
        assert out.json()["choices"][0]["text"] == prompt_tokenizer.decode(expected)


def test_a_killed_engine_process_fails_its_streams_and_is_replaced(
    app: ServedApp, served_model_dir, prompt_tokenizer
) -> None:
    replica = llm_replica()
    pid_ref: ray.ObjectRef[int] = replica.__ray_call__.remote(engine_core_pid)
    pid = ray.get(pid_ref)

    async def kill_core() -> None:
        os.kill(pid, signal.SIGKILL)

    ends = asyncio.run(streams_cut_off(app, MODEL, PROMPTS, TOKENS, 0.0, kill_core))
    for delay, last in ends:
        assert delay < 1.0, delay
        error = json.loads(last)["error"]  # an error event, not a clean finish
        assert error["code"] == "service_unavailable", error
    deadline = time.monotonic() + 120
    prompt = PROMPTS[0]
    expected = prompt_tokenizer.decode(
        engine_greedy(served_model_dir, prompt_tokenizer.encode_prompt(prompt), 8)
    )
    while True:  # 503 with Retry-After until Serve's new replica is up
        response = completion(app, prompt, 8)
        if response.status_code == 200:
            assert response.json()["choices"][0]["text"] == expected
            break
        assert response.status_code == 503 and response.headers["Retry-After"], response.text
        assert time.monotonic() < deadline, "no replica replaced the dead one"
        time.sleep(1.0)
    new_pid = ray.get(llm_replica().__ray_call__.remote(engine_core_pid))
    assert new_pid != pid
