"""Serve overhead: TTFT and output tokens/s through HTTP (Ray Serve, the OpenAI API, SSE)
vs the same engine in-process, at concurrency 1 and 16, in one run.

Both sides: config.yaml's engine settings with speculation off, the bundled model, the same
prompts (held-out Python), greedy, 64 new tokens, EOS ignored. Prints a table, writes JSON.

    .venv/bin/python -m benchmarks.serve_overhead
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from transformers import AutoTokenizer

from benchmarks.common import hardware, median, print_table, write_json
from benchmarks.spec_decode import heldout_prompts
from deployments.engine_settings import EngineSettings
from workers.async_engine import AsyncEngine
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:8000"


def plain_config() -> dict[str, Any]:
    """config.yaml without speculation and without the DraftServer."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    args = config["applications"][0]["args"]
    args["llm"]["engine"]["spec"] = None
    args["draft"]["enabled"] = False
    args["router"]["speculation"] = {"mode": "off"}
    return config


async def one_http(client: httpx.AsyncClient, text: str, new_tokens: int) -> tuple[float, int]:
    body = {
        "model": "tandem-code-8m",
        "prompt": text,
        "max_tokens": new_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    start = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", f"{URL}/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["text"]:
                first = first or time.perf_counter() - start
        tokens = new_tokens
    return first or float("nan"), tokens


async def one_engine(
    engine: AsyncEngine, ids: list[int], new_tokens: int, rid: str
) -> tuple[float, int]:
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    start = time.perf_counter()
    first = None
    tokens = 0
    async for delta in engine.add_request(GenerateRequest(rid, tuple(ids), params)):
        if delta.token_ids and first is None:
            first = time.perf_counter() - start
        tokens += len(delta.token_ids)
    return first or float("nan"), tokens


async def measure(calls: list, concurrency: int) -> dict[str, float]:
    start = time.perf_counter()
    results = []
    for i in range(0, len(calls), concurrency):
        results += await asyncio.gather(*(c() for c in calls[i : i + concurrency]))
    elapsed = time.perf_counter() - start
    return {
        "ttft_p50_ms": 1000 * median([r[0] for r in results]),
        "tokens_per_s": sum(r[1] for r in results) / elapsed,
    }


def wait_ready(timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{URL}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("the Serve app did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--name", default="serve_overhead_cpu.json")
    args = parser.parse_args()
    config = plain_config()
    app_args = config["applications"][0]["args"]
    model_dir = str(ROOT / app_args["model"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = heldout_prompts(args.requests, 96)
    texts = [tokenizer.decode(p, skip_special_tokens=True) for p in prompts]
    rows = []
    engine = AsyncEngine(
        LLMEngine(EngineSettings(**app_args["llm"]["engine"]).engine_config(model_dir))
    )

    async def in_process(concurrency: int) -> dict[str, float]:
        calls = [
            lambda i=i: one_engine(
                engine, tokenizer(texts[i])["input_ids"], args.new_tokens, f"c{concurrency}-{i}"
            )
            for i in range(args.requests)
        ]
        return await measure(calls, concurrency)

    local = {c: asyncio.run(in_process(c)) for c in (1, 16)}
    engine.shutdown()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=ROOT, delete=False) as f:
        yaml.safe_dump(config, f)
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/serve"), "run", f.name],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready()

        async def over_http(concurrency: int) -> dict[str, float]:
            async with httpx.AsyncClient(timeout=120) as client:
                await one_http(client, texts[0], 4)  # warm-up
                calls = [
                    lambda i=i: one_http(client, texts[i], args.new_tokens)
                    for i in range(args.requests)
                ]
                return await measure(calls, concurrency)

        http = {c: asyncio.run(over_http(c)) for c in (1, 16)}
    finally:
        server.terminate()
        server.wait(timeout=60)
        Path(f.name).unlink()
    for c in (1, 16):
        rows.append(
            {
                "concurrency": c,
                "ttft_p50_ms_engine": local[c]["ttft_p50_ms"],
                "ttft_p50_ms_http": http[c]["ttft_p50_ms"],
                "ttft_overhead_ms": http[c]["ttft_p50_ms"] - local[c]["ttft_p50_ms"],
                "tok_s_engine": local[c]["tokens_per_s"],
                "tok_s_http": http[c]["tokens_per_s"],
                "throughput_ratio": http[c]["tokens_per_s"] / local[c]["tokens_per_s"],
            }
        )
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "requests": args.requests,
            "new_tokens": args.new_tokens,
            "results": rows,
        },
    )
    print(
        f"\n{hardware()}; {args.requests} requests of {args.new_tokens} tokens, greedy, "
        "speculation off; HTTP = Ray Serve + OpenAI API + SSE on this machine"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
