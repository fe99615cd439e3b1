"""Tandem on a three-node Ray cluster (ray.cluster_utils.Cluster): target replicas on two
nodes, the DraftServer on the third. Remote speculation keeps greedy output exact, and a
replica that starts after `load_lora_adapter` serves the adapter."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import ray
from ray.cluster_utils import Cluster

from tests.deployments.oracle import engine_greedy
from tests.deployments.serve_harness import API_KEY, running_app, small_app_args

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = "tiny-chat"
PROMPT = "def add(a, b):"


@pytest.fixture(scope="module")
def cluster_app(served_model_dir: Path, adapter_root: Path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for resources in ({"target": 1}, {"target": 1}, {"draft": 1}):
        cluster.add_node(num_cpus=0, resources=resources)
    cluster.wait_for_nodes()
    engine = {
        **small_app_args("")["llm"]["engine"],
        "lora": {"max_loras": 2, "max_lora_rank": 8, "max_cpu_loras": 2},
        "spec": {"num_speculative_tokens": 3, "remote_timeout_s": 5.0},
    }
    args = small_app_args(
        str(served_model_dir),
        llm={
            "num_replicas": 2,
            "ray_actor_options": {"num_cpus": 0, "resources": {"target": 1}},
            "engine": engine,
        },
        draft={
            "enabled": True,
            "model": str(served_model_dir),
            "ray_actor_options": {"num_cpus": 0, "resources": {"draft": 1}},
            "engine": {"block_size": 4},
        },
        adapters={"roots": [str(adapter_root)]},
        router={"speculation": {"mode": "remote"}},
    )
    try:
        with running_app(args, init={"address": cluster.address}) as served:
            yield served
    finally:
        cluster.shutdown()


def complete(app, model: str) -> str:
    out = app.client().completions.create(
        model=model, prompt=PROMPT, max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
    )
    return out.choices[0].text


def test_remote_draft_on_another_node_keeps_greedy_output_exact(
    cluster_app, served_model_dir, prompt_tokenizer
):
    expected = engine_greedy(served_model_dir, prompt_tokenizer.encode_prompt(PROMPT), 10)
    for _ in range(3):
        assert complete(cluster_app, MODEL) == prompt_tokenizer.decode(expected)
    assert cluster_app.handle("DraftServer").stats.remote().result()["num_proposals"] > 0


def llm_replica_actors() -> list[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return [a["name"] for a in names if "LLMServer" in a["name"]]


def wait_for_replicas_at(app, version: int, count: int, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    status: dict = {}
    while time.monotonic() < deadline:
        status = app.handle("AdapterControl").adapter_status.remote().result()
        at_version = [r for r, v in status["replicas"].items() if v >= version]
        if len(at_version) >= count:
            return status
        time.sleep(0.5)
    raise AssertionError(f"replicas did not converge on version {version}: {status}")


def test_a_replica_started_after_load_serves_the_adapter(
    cluster_app, served_model_dir, adapter_root, prompt_tokenizer
):
    body = {"lora_name": "sql", "lora_path": str(adapter_root / "sql")}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    loaded = httpx.post(
        f"{cluster_app.base_url}/v1/load_lora_adapter", json=body, headers=headers, timeout=120
    )
    assert loaded.status_code == 200, loaded.text
    version = wait_for_replicas_at(cluster_app, 1, 2)["version"]

    victim = llm_replica_actors()[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    deadline = time.monotonic() + 120
    while victim in llm_replica_actors() or len(llm_replica_actors()) < 2:
        assert time.monotonic() < deadline, "Serve did not replace the killed replica"
        time.sleep(0.5)
    wait_for_replicas_at(cluster_app, version, 2)

    prompt = prompt_tokenizer.encode_prompt(PROMPT)
    expected = engine_greedy(served_model_dir, prompt, 10, adapter_root, "sql")
    for _ in range(6):  # both replicas, the new one included, serve the adapter
        assert complete(cluster_app, "sql") == prompt_tokenizer.decode(expected)
