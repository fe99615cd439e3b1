"""Two Router replicas over one control plane (AdapterControl): adapters loaded through one
are served through both and by an LLMServer replica that starts later; each Router admits
its share of the limits and refuses the rest with 429."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
import ray

from tests.deployments.oracle import engine_greedy
from tests.deployments.serve_harness import (
    API_KEY,
    ServedApp,
    completion_burst,
    running_app,
    small_app_args,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

MODEL = "tiny-chat"
PROMPT = "def add(a, b):"
ROUTERS, MAX_RUNNING, MAX_WAITING = 2, 2, 2
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def app(served_model_dir: Path, adapter_root: Path):
    lora = {"max_loras": 2, "max_lora_rank": 8, "max_cpu_loras": 2}
    args = small_app_args(
        str(served_model_dir),
        llm={"engine": {**small_app_args("")["llm"]["engine"], "lora": lora}},
        adapters={"roots": [str(adapter_root)]},
        router={"num_replicas": ROUTERS, "max_running": MAX_RUNNING, "max_waiting": MAX_WAITING},
    )
    with running_app(args) as served:
        yield served


def mirrors(app: ServedApp, timeout_s: float = 30.0) -> dict[str, list[str]]:
    """Each Router replica's adapter names (calls until both replicas have answered)."""
    router = app.handle("Router")
    seen: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < ROUTERS:
        assert time.monotonic() < deadline, f"only these Router replicas answered: {seen}"
        replica, names = router.adapter_mirror.remote().result()
        seen[replica] = names
    return seen


def complete(app: ServedApp, model: str) -> str:
    out = app.client().completions.create(
        model=model, prompt=PROMPT, max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
    )
    return out.choices[0].text


def llm_replica_actors() -> list[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return [a["name"] for a in names if "LLMServer" in a["name"]]


def test_an_adapter_loaded_through_one_router_is_served_through_both_and_after_a_restart(
    app, served_model_dir, adapter_root, prompt_tokenizer
):
    body = {"lora_name": "sql", "lora_path": str(adapter_root / "sql")}
    url = app.base_url
    loaded = httpx.post(f"{url}/v1/load_lora_adapter", json=body, headers=HEADERS, timeout=60)
    assert loaded.status_code == 200, loaded.text
    assert all(names == ["sql"] for names in mirrors(app).values())
    expected = prompt_tokenizer.decode(
        engine_greedy(
            served_model_dir, prompt_tokenizer.encode_prompt(PROMPT), 10, adapter_root, "sql"
        )
    )
    for _ in range(4):  # the proxy spreads these over both Router replicas
        assert complete(app, "sql") == expected
        ids = [m.id for m in app.client().models.list().data]
        assert ids == [MODEL, "sql"]

    # a replica that starts later (Serve replaces a killed one) holds it from the start
    control = app.handle("AdapterControl")
    status = control.adapter_status.remote().result()
    (victim,) = llm_replica_actors()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    deadline = time.monotonic() + 120
    while True:  # the new replica (a new id) reports holding the set
        assert time.monotonic() < deadline, "the new replica did not catch up"
        replicas = control.adapter_status.remote().result()["replicas"]
        new = {r: v for r, v in replicas.items() if r not in status["replicas"]}
        if victim not in llm_replica_actors() and new and min(new.values()) >= status["version"]:
            break
        time.sleep(0.5)
    for attempt in range(5):
        try:
            assert complete(app, "sql") == expected
            break
        except openai.APIStatusError as e:  # the old replica may still be being removed
            assert e.status_code == 503 and attempt < 4
            time.sleep(1.0)
    assert [a.name for a in app.handle("LLMServer").list_adapters.remote().result()] == ["sql"]

    unloaded = httpx.post(
        f"{url}/v1/unload_lora_adapter", json={"lora_name": "sql"}, headers=HEADERS, timeout=60
    )
    assert unloaded.status_code == 200, unloaded.text
    assert all(names == [] for names in mirrors(app).values())
    for _ in range(4):
        with pytest.raises(openai.NotFoundError):
            complete(app, "sql")
    assert app.handle("LLMServer").list_adapters.remote().result() == []


def test_each_router_replica_admits_its_share_and_refuses_the_rest_with_429(app):
    router = app.handle("Router")
    shares = {tuple(sorted(router.admission_state.remote().result().items())) for _ in range(4)}
    assert shares == {(("max_running", 1), ("max_waiting", 1), ("running", 0), ("waiting", 0))}

    accepted, refused = completion_burst(app, 10, PROMPT, MODEL)
    # each replica holds at most its 1 running + 1 waiting; the rest are refused at once
    assert 2 <= len(accepted) <= MAX_RUNNING + MAX_WAITING and refused
    assert all(seconds < 2.0 for seconds, _ in refused)
    assert all(int(e.response.headers["retry-after"]) >= 1 for _, e in refused)
    assert all(out.usage.completion_tokens == 40 for _, out in accepted)
