"""vLLM's utility endpoints and adapter-load semantics, in process: /tokenize,
/detokenize, /version, GET /v1/models/{id}, load_lora_adapter with load_inplace; and the
renaming that GET /metrics applies to Ray's export."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from router.prometheus_text import tandem_series
from tests.factories import make_engine
from tests.lora_factories import make_peft_adapter
from tests.router.local_app import MODEL, make_local_app
from workers.async_engine import AsyncEngine
from workers.config import LoRAConfig


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, served_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("endpoint-adapters")
    make_peft_adapter(served_model_dir, root / "sql", seed=1, rank=4)
    make_peft_adapter(served_model_dir, root / "sql-v2", seed=2, rank=4)
    return root


@pytest.fixture(scope="module")
def app(served_model_dir: Path, root: Path):
    lora = LoRAConfig(adapter_roots=(str(root),))
    engine = AsyncEngine(make_engine(served_model_dir, lora=lora))
    yield make_local_app(served_model_dir, engine, adapter_roots=[str(root)])[0]
    engine.shutdown()


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(main())


def test_tokenize_and_detokenize_round_trip(app, prompt_tokenizer) -> None:
    text = "def add(a, b):"
    out = call(app, "POST", "/tokenize", json={"prompt": text, "return_token_strs": True})
    assert out.status_code == 200
    body = out.json()
    assert body["tokens"] == list(prompt_tokenizer.encode_prompt(text))
    assert body["count"] == len(body["tokens"]) and body["max_model_len"] == 256
    assert len(body["token_strs"]) == body["count"]
    back = call(app, "POST", "/detokenize", json={"model": MODEL, "tokens": body["tokens"]})
    assert prompt_tokenizer.decode(body["tokens"], False) == back.json()["prompt"]
    chat = call(app, "POST", "/tokenize", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.json()["count"] > 1
    both = call(app, "POST", "/tokenize", json={"prompt": "a", "messages": []})
    assert both.status_code == 400
    oov = call(app, "POST", "/detokenize", json={"tokens": [1, 100000]})
    assert oov.status_code == 400 and oov.json()["error"]["param"] == "tokens"
    unknown = call(app, "POST", "/tokenize", json={"model": "nope", "prompt": "a"})
    assert unknown.status_code == 404


def test_version_and_one_model(app) -> None:
    assert call(app, "GET", "/version").json()["version"]
    model = call(app, "GET", f"/v1/models/{MODEL}").json()
    assert model["id"] == MODEL and model["object"] == "model"
    missing = call(app, "GET", "/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_reloading_a_name_needs_load_inplace(app) -> None:
    first = call(app, "POST", "/v1/load_lora_adapter", json={"lora_name": "s", "lora_path": "sql"})
    assert first.status_code == 200
    again = {"lora_name": "s", "lora_path": "sql-v2"}
    refused = call(app, "POST", "/v1/load_lora_adapter", json=again)
    assert refused.status_code == 400 and "load_inplace" in refused.json()["error"]["message"]
    replaced = call(app, "POST", "/v1/load_lora_adapter", json={**again, "load_inplace": True})
    assert replaced.status_code == 200
    assert call(app, "GET", "/v1/models/s").json()["parent"] == MODEL


def test_metrics_text_keeps_only_tandem_series_renamed() -> None:
    node_a = "\n".join(
        [
            "# HELP ray_tandem_generation_tokens_total Output tokens generated.",
            "# TYPE ray_tandem_generation_tokens_total counter",
            'ray_tandem_generation_tokens_total{model="m",adapter=""} 12.0',
            "# HELP ray_node_cpu_count CPUs",
            "ray_node_cpu_count 2",
            'ray_tandem_ttft_seconds_bucket{le="0.1"} 3',
        ]
    )
    node_b = "\n".join(
        [
            "# HELP ray_tandem_generation_tokens_total Output tokens generated.",
            'ray_tandem_generation_tokens_total{model="m",adapter="a"} 5.0',
        ]
    )
    text = tandem_series([node_a, node_b])
    assert "ray_" not in text
    lines = text.splitlines()
    assert lines.count("# HELP tandem:generation_tokens_total Output tokens generated.") == 1
    assert 'tandem:generation_tokens_total{model="m",adapter="a"} 5.0' in lines
    assert 'tandem:ttft_seconds_bucket{le="0.1"} 3' in lines
