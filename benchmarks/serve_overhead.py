"""Serve overhead: TTFT and output tokens/s through HTTP (Ray Serve, the OpenAI API, SSE)
vs the same engine in-process, at each concurrency (default 1 and 16), in one run.

Both sides: the same engine settings with speculation off, the same prompts (held-out
Python), greedy, 64 new tokens, EOS ignored, one warm-up request each. Prints a table, writes
JSON. On CPU (the default): config.tiny.yaml's settings and the bundled model. With
`--device cuda`: a random-weight 1.1B Llama in bf16 (benchmarks/serve_gpu_model.py), one GPU
for the replica, up to 256 sequences and 8192 tokens per step, CUDA graphs on.

    .venv/bin/python -m benchmarks.serve_overhead
    python -m benchmarks.serve_overhead --device cuda --concurrency 1,32
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
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
SERVE_CLI = "from ray.serve.scripts import cli; cli()"  # `serve`, where it is not on PATH
RAY_CLI = "from ray.scripts.scripts import main; main()"  # `ray`
GPU_MODEL_NAME = "llama-1b-random"
GPU_ENGINE = {
    "device": "cuda",
    "dtype": "bfloat16",
    "memory_fraction": 0.6,
    "max_num_seqs": 256,
    "max_num_batched_tokens": 8192,
    "lora": None,
    "spec": None,
}


def plain_config() -> dict[str, Any]:
    """config.tiny.yaml (the bundled model) without speculation and without the DraftServer."""
    config = yaml.safe_load((ROOT / "config.tiny.yaml").read_text())
    args = config["applications"][0]["args"]
    args["llm"]["engine"]["spec"] = None
    args["draft"]["enabled"] = False
    args["router"]["speculation"] = {"mode": "off"}
    return config


def build_config(device: str, model_dir: Path | None = None) -> dict[str, Any]:
    """The Serve config of the run; for cuda, `model_dir` is the GPU model's directory."""
    config = plain_config()
    if device == "cpu":
        return config
    args = config["applications"][0]["args"]
    args["model"] = str(model_dir)
    args["served_model_name"] = GPU_MODEL_NAME
    args["llm"]["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 1}
    args["llm"]["engine"] = dict(GPU_ENGINE)
    args["adapters"]["preload"] = {}  # the bundled adapters fit the bundled model only
    return config


def served_model_name(app_args: dict[str, Any]) -> str:
    """The name clients send as `model` (as deployments.app.build_app derives it)."""
    return app_args.get("served_model_name") or Path(app_args["model"]).name


async def one_http(
    client: httpx.AsyncClient, model: str, text: str, new_tokens: int
) -> tuple[float, int]:
    body = {
        "model": model,
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
        response.raise_for_status()
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


def run_in_process(
    app_args: dict[str, Any], model_dir: str, texts: list[str], new_tokens: int, levels: list[int]
) -> dict[int, dict[str, float]]:
    """The engine in this process, with the replica's settings; freed before returning."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    engine = AsyncEngine(
        LLMEngine(EngineSettings(**app_args["llm"]["engine"]).engine_config(model_dir))
    )

    async def at(engine: AsyncEngine, concurrency: int) -> dict[str, float]:
        await one_engine(engine, ids[0], 4, f"warm-{concurrency}")  # as the HTTP side
        calls = [
            lambda i=i: one_engine(engine, ids[i], new_tokens, f"c{concurrency}-{i}")
            for i in range(len(texts))
        ]
        return await measure(calls, concurrency)

    try:
        return {c: asyncio.run(at(engine, c)) for c in levels}
    finally:
        engine.shutdown()
        del engine
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the replica sizes its KV cache from free memory


def run_over_http(
    config: dict[str, Any], texts: list[str], new_tokens: int, levels: list[int], ready_s: float
) -> dict[int, dict[str, float]]:
    """`serve run` of `config` in a subprocess, measured through the OpenAI API, stopped."""
    model = served_model_name(config["applications"][0]["args"])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=ROOT, delete=False) as f:
        yaml.safe_dump(config, f)
    log = Path(f.name).with_suffix(".log")
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE_CLI, "run", f.name],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(server, ready_s)

        async def at(concurrency: int) -> dict[str, float]:
            async with httpx.AsyncClient(timeout=ready_s) as client:
                await one_http(client, model, texts[0], 4)  # warm-up
                calls = [
                    lambda i=i: one_http(client, model, texts[i], new_tokens)
                    for i in range(len(texts))
                ]
                return await measure(calls, concurrency)

        return {c: asyncio.run(at(c)) for c in levels}
    except BaseException:
        print(f"--- serve run output ({log}) ---\n{_tail(log)}", file=sys.stderr)
        raise
    finally:
        stop_server(server)
        Path(f.name).unlink()
        log.unlink(missing_ok=True)


def wait_ready(server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"serve run exited with {server.returncode}")
        try:
            if httpx.get(f"{URL}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("the Serve app did not come up")


def stop_server(server: subprocess.Popen) -> None:
    """Ctrl-C (serve shuts down, and the Ray it started); force if that does not end it."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGTERM, 30)):
        if server.poll() is None:
            server.send_signal(sig)
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            pass
    server.kill()
    server.wait()
    subprocess.run([sys.executable, "-c", RAY_CLI, "stop", "--force"], cwd=ROOT, check=False)


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--concurrency", default="1,16", help="comma list, e.g. 1,32")
    parser.add_argument(
        "--requests", type=int, default=None, help="default max(32, 2 x most concurrent)"
    )
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--name", default=None, help="default serve_overhead_cpu.json / serve_overhead_gpu.json"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    requests = args.requests or max(32, 2 * max(levels))
    name = args.name or f"serve_overhead_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    # prompts from the bundled tokenizer, which the GPU model shares
    bundled = ROOT / plain_config()["applications"][0]["args"]["model"]
    tokenizer = AutoTokenizer.from_pretrained(bundled)
    prompts = heldout_prompts(requests, 96)
    texts = [tokenizer.decode(p, skip_special_tokens=True) for p in prompts]
    with tempfile.TemporaryDirectory(dir=ROOT, prefix="serve_overhead_model_") as tmp:
        model_dir = None
        if args.device == "cuda":
            from benchmarks.serve_gpu_model import save_gpu_model

            model_dir = save_gpu_model(Path(tmp) / GPU_MODEL_NAME, bundled)
        config = build_config(args.device, model_dir)
        app_args = config["applications"][0]["args"]
        local = run_in_process(
            app_args, str(ROOT / app_args["model"]), texts, args.new_tokens, levels
        )
        ready_s = 600 if args.device == "cuda" else 180
        http = run_over_http(config, texts, args.new_tokens, levels, ready_s)
    rows = []
    for c in levels:
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
    payload: dict[str, Any] = {
        "hardware": hardware(),
        "requests": requests,
        "new_tokens": args.new_tokens,
        "results": rows,
    }
    if args.device == "cuda":
        payload["model"] = "random-weight Llama, benchmarks.gpu_suite.SHAPE_1B, bf16"
        payload["engine"] = app_args["llm"]["engine"]
    write_json(name, payload)
    print(
        f"\n{hardware()}; {requests} requests of {args.new_tokens} tokens, greedy, "
        "speculation off; HTTP = Ray Serve + OpenAI API + SSE on this machine"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
