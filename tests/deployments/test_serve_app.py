"""The Tandem app on Ray Serve, through the official openai client: one local Ray cluster
for the module (LLMServer with LoRA and remote speculation, DraftServer, Router), with the
replica's engine on a thread and then in a process of its own."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.deployments.oracle import engine_greedy
from tests.deployments.serve_harness import (
    API_KEY,
    ServedApp,
    completion_burst,
    running_app,
    small_app_args,
)
from tests.openai_errors import error_body

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

MODEL = "tiny-chat"
PROMPT = "def add(a, b):"
MAX_RUNNING, MAX_WAITING = 2, 2


@pytest.fixture(scope="module", params=["engine-thread", "engine-process"])
def app(request: pytest.FixtureRequest, served_model_dir: Path, adapter_root: Path):
    """Every test twice: the replica's engine on a thread, then in a process of its own."""
    engine = {
        "lora": {"max_loras": 2, "max_lora_rank": 8, "max_cpu_loras": 2},
        "spec": {"num_speculative_tokens": 3, "remote_timeout_s": 5.0},
    }
    args = small_app_args(
        str(served_model_dir),
        llm={
            "engine": {**small_app_args("")["llm"]["engine"], **engine},
            "engine_process": request.param == "engine-process",
        },
        draft={"enabled": True, "model": str(served_model_dir), "engine": {"block_size": 4}},
        adapters={"roots": [str(adapter_root)]},
        router={
            "max_running": MAX_RUNNING,
            "max_waiting": MAX_WAITING,
            "speculation": {"mode": "remote"},
        },
    )
    with running_app(args) as served:
        yield served


def greedy_text(app: ServedApp, model: str = MODEL, **kwargs) -> openai.types.Completion:
    return app.client().completions.create(
        model=model,
        prompt=PROMPT,
        max_tokens=10,
        temperature=0,
        extra_body={"ignore_eos": True},
        **kwargs,
    )


def test_completion_over_http_equals_the_engine_and_uses_the_remote_draft(
    app, served_model_dir, prompt_tokenizer
):
    out = greedy_text(app)
    expected = engine_greedy(served_model_dir, prompt_tokenizer.encode_prompt(PROMPT), 10)
    assert out.choices[0].text == prompt_tokenizer.decode(expected)
    assert out.usage is not None and out.usage.completion_tokens == 10
    # greedy requests were routed to remote speculation: the DraftServer proposed for them
    assert app.handle("DraftServer").stats.remote().result()["num_queries"] > 0


def test_streamed_chat_with_usage(app):
    stream = app.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == 6
    whole = app.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_errors_have_the_openai_shape_and_status(app):
    with pytest.raises(openai.NotFoundError):
        greedy_text(app, model="no-such-model")
    with pytest.raises(openai.BadRequestError) as bad:
        app.client().completions.create(model=MODEL, prompt="x", temperature=-1)
    assert error_body(bad.value)["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as engine_error:
        app.client().completions.create(model=MODEL, prompt=[1, 2, 999], max_tokens=2)
    assert "vocabulary" in error_body(engine_error.value)["message"]
    missing = httpx.get(f"{app.base_url}/v1/models")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{app.base_url}/health").status_code == 200


def test_adapters_load_and_unload_on_the_cluster(
    app, served_model_dir, adapter_root, prompt_tokenizer
):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"lora_name": "sql", "lora_path": str(adapter_root / "sql")}
    loaded = httpx.post(
        f"{app.base_url}/v1/load_lora_adapter", json=body, headers=headers, timeout=60
    )
    assert loaded.status_code == 200, loaded.text
    models = app.client().models.list().data
    assert [(m.id, getattr(m, "parent", None)) for m in models] == [(MODEL, None), ("sql", MODEL)]

    prompt = prompt_tokenizer.encode_prompt(PROMPT)
    expected = prompt_tokenizer.decode(
        engine_greedy(served_model_dir, prompt, 10, adapter_root, "sql")
    )
    assert greedy_text(app, model="sql").choices[0].text == expected
    assert greedy_text(app, model=f"{MODEL}:sql").choices[0].text == expected

    unloaded = httpx.post(
        f"{app.base_url}/v1/unload_lora_adapter",
        json={"lora_name": "sql"},
        headers=headers,
        timeout=60,
    )
    assert unloaded.status_code == 200
    with pytest.raises(openai.NotFoundError):
        greedy_text(app, model="sql")


def engine_idle(app: ServedApp, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = app.handle("LLMServer").stats.remote().result()
        if stats.num_running == 0 and stats.num_free_blocks == stats.num_total_blocks:
            return True
        time.sleep(0.1)
    return False


def test_client_disconnect_aborts_the_request_and_frees_its_blocks(app):
    llm = app.handle("LLMServer")
    abandoned = llm.num_abandoned_requests.remote().result()
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 200, "stream": True, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", f"{app.base_url}/v1/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        stats = app.handle("LLMServer").stats.remote().result()
        assert stats.num_running == 1
    assert engine_idle(app)
    # the request ended because the client left, not because it finished
    assert llm.num_abandoned_requests.remote().result() == abandoned + 1


def test_overload_is_refused_quickly_and_every_accepted_request_completes(app):
    accepted, refused = completion_burst(app, 12, PROMPT, MODEL)
    assert len(accepted) >= MAX_RUNNING + MAX_WAITING - 1 and refused
    assert all(seconds < 2.0 for seconds, _ in refused)
    assert all(int(e.response.headers["retry-after"]) >= 1 for _, e in refused)
    assert all(out.usage.completion_tokens == 40 for _, out in accepted)
    assert engine_idle(app)


def test_metrics_on_the_api_port_are_the_ray_export_renamed(app):
    greedy_text(app)
    deadline = time.monotonic() + 60  # Ray reports metrics every few seconds
    headers = {"Authorization": f"Bearer {API_KEY}"}
    text = ""
    while time.monotonic() < deadline:
        response = httpx.get(f"{app.base_url}/metrics", headers=headers, timeout=10)
        assert response.status_code == 200
        text = response.text
        if "tandem:generation_tokens_total{" in text:
            break
        time.sleep(1.0)
    assert "tandem:generation_tokens_total{" in text, text[:2000]
    assert "ray_" not in text
    assert httpx.get(f"{app.base_url}/metrics", timeout=10).status_code == 401
