"""Bad input through HTTP on a real Serve app: each case gets a clean, OpenAI-shaped 400
naming its field, no body leaks internals, four bystander streams beside the cases finish
as the engine alone would, and the server answers at once afterwards. Last, the engine loop
is killed on purpose: streams in flight get an error event within a second, check_health
fails, and new requests are not held."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.deployments.engine_faults import break_engine_loop, engine_is_alive
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
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
BYSTANDER_PROMPTS = ["def add(a, b):", "class Stack:", "import os\n", "for i in range("]
BYSTANDER_TOKENS = 240
# What no client may see: tracebacks, pids, IPs, actor ids, file paths, ANSI escapes.
LEAKS = re.compile(
    r"Traceback|File \"|\bpid[=: ]|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|actor_id|ActorID|"
    r"Actor[A-Z]\w*Error|RayTaskError|\.py\b|/(tmp|work|home|usr|root)/|\x1b\["
)

BAD_CASES: list[tuple[str, str, str, str]] = [
    # (endpoint, raw JSON fields, param, words in the message)
    ("completions", '"stop_token_ids": [100000], "min_tokens": 1', "stop_token_ids", "100000"),
    ("completions", '"repetition_penalty": 1e-300', "repetition_penalty", "[0.01, 100]"),
    ("completions", '"temperature": Infinity, "min_tokens": 2', "temperature", "finite"),
    ("completions", '"temperature": NaN', "temperature", "finite"),
    ("completions", f'"seed": {2**70}', "seed", "64-bit"),
    ("completions", '"n": 1000', "n", "n must be <= 8"),
    ("completions", '"beam_width": 1000', "beam_width", "beam_width must be <= 8"),
    ("completions", '"best_of": 1000', "best_of", "best_of must be <= 8"),
    ("completions", '"top_p": 0', "top_p", "(0, 1]"),
    ("completions", '"logprobs": 50', "logprobs", "[0, 20]"),
    ("completions", '"max_tokens": 100000', "max_tokens", "context"),
    ("chat", '"presence_penalty": -3', "presence_penalty", "[-2, 2]"),
]
BAD_PROMPTS: list[tuple[str, str, str]] = [
    ('"prompt": [5, -1, 7]', "prompt", "-1"),
    ('"prompt": [99999]', "prompt", "99999"),
    ('"prompt": "a\\ud800b"', "prompt", "Unicode"),
]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, adapter_root: Path) -> Path:
    root = tmp_path_factory.mktemp("bad-adapters")
    shutil.copytree(adapter_root / "sql", root / "sql")
    shutil.copytree(adapter_root / "sql", root / "nan-alpha")
    config_path = root / "nan-alpha" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["lora_alpha"] = float("nan")
    config_path.write_text(json.dumps(config))  # written as NaN, as a careless script would
    return root


@pytest.fixture(scope="module")
def app(served_model_dir: Path, roots: Path):
    engine = {**small_app_args("")["llm"]["engine"], "max_num_seqs": 8}
    engine["lora"] = {"max_loras": 2, "max_lora_rank": 8, "max_cpu_loras": 2}
    args = small_app_args(
        str(served_model_dir),
        llm={"engine": engine, "health_check_period_s": 1.0},
        adapters={"roots": [str(roots)]},
    )
    with running_app(args) as served:
        yield served


def post(app: ServedApp, path: str, raw_body: str, timeout: float = 30.0) -> httpx.Response:
    return httpx.post(f"{app.base_url}{path}", content=raw_body, headers=HEADERS, timeout=timeout)


def body_for(endpoint: str, fields: str) -> tuple[str, str]:
    if endpoint == "chat":
        base = f'"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}]'
        return "/v1/chat/completions", f"{{{base}, {fields}}}"
    return "/v1/completions", f'{{"model": "{MODEL}", "prompt": "hi", {fields}}}'


def assert_clean_400(response: httpx.Response, param: str, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert words in error["message"], error
    assert not LEAKS.search(response.text), response.text
    assert len(response.text) < 600, response.text  # a sentence, not a traceback


async def bystander(client: httpx.AsyncClient, prompt: str) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": BYSTANDER_TOKENS,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    text, finish, events = "", None, []
    async with client.stream("POST", "/v1/completions", json=body, headers=HEADERS) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if line[6:] == "[DONE]":
                break
            choice = json.loads(line[6:])["choices"][0]
            text += choice["text"]
            finish = choice["finish_reason"] or finish
    return {"text": text, "finish": finish, "done": events[-1] == "[DONE]", "end": time.time()}


def bad_requests() -> list[tuple[str, str, str, str]]:
    """(path, raw JSON body, param, words in the message) of every bad case."""
    cases = [
        (*body_for(endpoint, fields), param, words) for endpoint, fields, param, words in BAD_CASES
    ]
    cases += [
        ("/v1/completions", f'{{"model": "{MODEL}", {fields}}}', param, words)
        for fields, param, words in BAD_PROMPTS
    ]
    chat = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "\\udfff"}}]}}'
    cases.append(("/v1/chat/completions", chat, "messages", "Unicode"))
    return cases


def test_bad_requests_get_clean_400s_while_bystanders_stream(
    app: ServedApp, served_model_dir: Path, prompt_tokenizer
) -> None:
    cases = bad_requests()
    group = 2  # cases per set of bystanders, so that the streams outlast the cases

    async def one_group(chunk) -> tuple[list[dict[str, Any]], float]:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=120) as client:
            streams = [asyncio.create_task(bystander(client, p)) for p in BYSTANDER_PROMPTS]
            await asyncio.sleep(0.1)  # they stream; 240 tokens last well under a second
            for path, raw, param, words in chunk:
                assert_clean_400(
                    await client.post(path, content=raw, headers=HEADERS), param, words
                )
            last_case = time.time()
            return await asyncio.gather(*streams), last_case

    expected = {
        prompt: prompt_tokenizer.decode(
            engine_greedy(
                served_model_dir, prompt_tokenizer.encode_prompt(prompt), BYSTANDER_TOKENS
            )
        )
        for prompt in BYSTANDER_PROMPTS
    }
    for start in range(0, len(cases), group):
        results, last_case = asyncio.run(one_group(cases[start : start + group]))
        ends = sorted(r["end"] - last_case for r in results)
        assert ends[0] > 0, f"the streams ended before the last case: {ends}"
        for prompt, result in zip(BYSTANDER_PROMPTS, results, strict=True):
            assert result["done"] and result["finish"] == "length"
            assert result["text"] == expected[prompt]
    start_s = time.monotonic()
    ok = post(app, "/v1/completions", f'{{"model": "{MODEL}", "prompt": "hi", "max_tokens": 2}}')
    assert ok.status_code == 200 and time.monotonic() - start_s < 5.0


def test_an_adapter_with_nan_alpha_is_refused_and_nothing_is_loaded(app: ServedApp) -> None:
    raw = '{"lora_name": "broken", "lora_path": "nan-alpha"}'
    response = post(app, "/v1/load_lora_adapter", raw)
    assert_clean_400(response, "lora_path", "lora_alpha must be a finite number > 0, got nan")
    models = httpx.get(f"{app.base_url}/v1/models", headers=HEADERS).json()
    assert "broken" not in {m["id"] for m in models["data"]}
    missing = post(app, "/v1/completions", '{"model": "broken", "prompt": "hi"}')
    assert missing.status_code == 404
    good = post(app, "/v1/load_lora_adapter", '{"lora_name": "sql", "lora_path": "sql"}')
    assert good.status_code == 200  # the replica took no harm from the refused one


def test_malformed_bodies_leak_nothing(app: ServedApp) -> None:
    cases = [
        ("/v1/completions", '{"model": "tiny-chat", "prompt": '),  # truncated JSON
        ("/v1/completions", '{"model": "tiny-chat", "prompt": "x", "n": "many"}'),
        ("/v1/completions", '{"model": "tiny-chat", "prompt": {"nested": 1}}'),
        ("/v1/load_lora_adapter", '{"lora_name": "x", "lora_path": "../../etc"}'),
        ("/v1/load_lora_adapter", '{"lora_name": "x", "lora_path": "/etc"}'),
    ]
    for path, raw in cases:
        response = post(app, path, raw)
        assert response.status_code == 400, response.text
        assert not LEAKS.search(response.text), response.text


def llm_server_replicas() -> list[Any]:
    """The LLMServer replicas' Ray actors."""
    return [
        ray.get_actor(a["name"], namespace=a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::tandem#LLMServer#")
    ]


def test_a_dead_engine_loop_fails_every_stream_at_once(app: ServedApp) -> None:
    replicas = llm_server_replicas()
    assert replicas and all(ray.get(r.__ray_call__.remote(engine_is_alive)) for r in replicas)

    async def break_loops() -> None:  # the loop dies at its next step
        for actor in replicas:
            await asyncio.to_thread(ray.get, actor.__ray_call__.remote(break_engine_loop))

    ends = streams_cut_off(app, MODEL, BYSTANDER_PROMPTS, BYSTANDER_TOKENS, 0.1, break_loops)
    for delay, last in asyncio.run(ends):
        assert delay < 1.0, delay
        error = json.loads(last)["error"]  # an error event, not a clean finish
        assert error["code"] == "service_unavailable", error
        assert not LEAKS.search(last) and "secret" not in last, last
    with pytest.raises(Exception, match="engine loop died"):
        app.handle("LLMServer").check_health.remote().result()
    start = time.monotonic()
    response = post(app, "/v1/completions", f'{{"model": "{MODEL}", "prompt": "hi"}}', 10.0)
    assert time.monotonic() - start < 5.0
    if response.status_code == 503:
        assert response.headers["Retry-After"]
        assert not LEAKS.search(response.text)
    else:  # Serve replaced the replica already
        assert response.status_code == 200
