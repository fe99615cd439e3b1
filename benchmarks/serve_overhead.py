"""Serve overhead: TTFT and output tokens/s through HTTP (Ray Serve, the OpenAI API, SSE)
vs the same engine in-process, at each concurrency, in one run.

Both sides: the same engine settings with speculation and LoRA off, the same prompts
(held-out Python, 96 tokens), greedy, `--new-tokens` (64) new tokens, EOS ignored, one
warm-up request per level; `concurrency` clients each send their next request as soon as
the previous one ends, until `--requests` (default max(32, 2 x concurrency)) are done. HTTP
is measured streamed (SSE; TTFT is the first text) and whole (the same requests without
streaming). In-process clients start together, so with equal outputs their requests end,
and the next ones arrive, on the same engine step; over HTTP arrivals spread over several
steps, and each step that carries a prefill runs outside the decode CUDA graphs.
`--stagger-ms S` measures that alone, without HTTP: the in-process run again with client i
starting i x S ms late ("staggered" columns). `--routers N` runs N Router replicas;
`--llm-replicas N` adds a second HTTP run with N LLMServer replicas (sharing the one GPU
on cuda: num_gpus 1/N and 1/N of the KV memory each) and reports how HTTP throughput
grows from 1 to N replicas; the in-process baseline stays one engine, which is what one
replica is. `--repeats N` runs each level N times on each side (medians; tok/s ranges).
HTTP load comes from `--client-procs` processes (benchmarks/http_load.py), so that
the load generator is not what is measured; "client_cpu" is the busiest one's CPU share.
`--env KEY=VALUE` (repeatable) goes to the `serve run` subprocess
(e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1). The app's config is built in
benchmarks/serve_process.py. Prints tables, writes JSON.

    .venv/bin/python -m benchmarks.serve_overhead --concurrency 1,4 --requests 8
    python -m benchmarks.serve_overhead --device cuda --concurrency 1,32,256 --routers 4 \\
        --llm-replicas 2 --env RAY_SERVE_THROUGHPUT_OPTIMIZED=1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoTokenizer

from benchmarks.common import decode_text, hardware, median, print_table, write_json
from benchmarks.http_load import HttpLoad
from benchmarks.serve_process import (
    BUNDLED_MODEL,
    GPU_MODEL_NAME,
    ROOT,
    engine_settings,
    serve_config,
    served_model_name,
    serving,
)
from benchmarks.spec_decode import heldout_prompts
from deployments.engine_settings import EngineSettings
from workers.async_engine import AsyncEngine
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

Call = Callable[[], Awaitable[tuple[float, int]]]  # -> (TTFT or latency in s, tokens)


async def one_engine(
    engine: AsyncEngine, ids: list[int], new_tokens: int, rid: str
) -> tuple[float, int]:
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    start = time.perf_counter()
    first = math.nan
    tokens = 0
    async for delta in engine.add_request(GenerateRequest(rid, tuple(ids), params)):
        if delta.token_ids and math.isnan(first):
            first = time.perf_counter() - start
        tokens += len(delta.token_ids)
    return first, tokens


async def measure(calls: list[Call], concurrency: int, stagger_s: float = 0.0) -> dict[str, float]:
    """`concurrency` clients, each starting the next call as soon as its last one ended;
    client i sends its first call `i x stagger_s` after the start (0: all at once)."""
    pending = iter(calls)
    results: list[tuple[float, int]] = []

    async def client(i: int) -> None:
        await asyncio.sleep(i * stagger_s)
        for call in pending:  # shared: each call runs once
            results.append(await call())

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "ttft_p50_ms": 1000 * median([r[0] for r in results]),
        "tokens_per_s": sum(r[1] for r in results) / elapsed,
        "tokens": sum(r[1] for r in results),
        "requests": len(results),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one level, with the tok/s range as "min-max"."""
    rates = [r["tokens_per_s"] for r in runs]
    summary = {
        "ttft_p50_ms": median([r["ttft_p50_ms"] for r in runs]),
        "tokens_per_s": median(rates),
        "tokens_per_s_range": f"{min(rates):.0f}-{max(rates):.0f}",
        "tokens": runs[0]["tokens"],
        "requests": runs[0]["requests"],
        "runs": len(runs),
    }
    if "client_cpu" in runs[0]:
        summary["client_cpu"] = median([r["client_cpu"] for r in runs])
    return summary


async def repeated(
    calls: Callable[[int], list[Call]], concurrency: int, repeats: int, stagger_s: float = 0.0
) -> dict[str, Any]:
    """`measure` of `calls(run)` for each of `repeats` runs, summarized."""
    return summarize([await measure(calls(r), concurrency, stagger_s) for r in range(repeats)])


def run_in_process(
    model_dir: Path,
    engine: dict[str, Any],
    texts: list[str],
    new_tokens: int,
    levels: dict[int, int],
    stagger_s: float = 0.0,
    repeats: int = 1,
) -> dict[int, dict[str, Any]]:
    """The engine in this process, with one replica's settings; freed before returning.
    `levels`: concurrency -> how many requests (the first of `texts`). With `stagger_s`,
    each level runs a second time with the clients' starts staggered (measure's
    stagger_s), its tok/s as "tokens_per_s_staggered". Each level runs `repeats` times
    (medians, see `repeated`)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    config = EngineSettings(**engine).engine_config(str(model_dir))
    async_engine = AsyncEngine(LLMEngine(config))

    async def at(concurrency: int, count: int) -> dict[str, Any]:
        await one_engine(async_engine, ids[0], 4, f"warm-{concurrency}")  # as the HTTP side

        def calls(tag: str) -> Callable[[int], list[Call]]:
            def run(r: int) -> list[Call]:  # request ids unique per run
                rid = f"{tag}{r}-{concurrency}"
                return [
                    partial(one_engine, async_engine, ids[i], new_tokens, f"{rid}-{i}")
                    for i in range(count)
                ]

            return run

        result = await repeated(calls("c"), concurrency, repeats)
        if stagger_s > 0:
            staggered = await repeated(calls("s"), concurrency, repeats, stagger_s)
            result["tokens_per_s_staggered"] = staggered["tokens_per_s"]
        return result

    try:
        return {c: asyncio.run(at(c, n)) for c, n in levels.items()}
    finally:
        async_engine.shutdown()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the replica sizes its KV cache from free memory


def run_over_http(
    config: dict[str, Any],
    texts: list[str],
    new_tokens: int,
    levels: dict[int, int],
    *,
    whole: bool,
    env: dict[str, str],
    ready_s: float,
    repeats: int = 1,
    client_processes: int = 1,
) -> dict[int, dict[str, Any]]:
    """`serve run` of `config`, measured through the OpenAI API (streamed, and whole if
    `whole`) by `client_processes` client processes (benchmarks/http_load.py), then stopped;
    each level `repeats` times (medians, see `summarize`)."""
    model = served_model_name(config)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=ROOT, delete=False) as f:
        yaml.safe_dump(config, f)
    path = Path(f.name)
    log = path.with_suffix(".log")

    def at(concurrency: int, count: int) -> dict[str, Any]:
        def runs(stream: bool) -> dict[str, Any]:
            return summarize(
                [
                    load.run(model, texts[:count], new_tokens, stream, concurrency)
                    for _ in range(repeats)
                ]
            )

        result = runs(True)
        if whole:
            result["tokens_per_s_whole"] = runs(False)["tokens_per_s"]
        return result

    load = HttpLoad(client_processes)
    try:
        with serving(path, env, ready_s, log):
            result = {c: at(c, n) for c, n in levels.items()}
    finally:
        load.close()
        path.unlink()
    log.unlink(missing_ok=True)  # kept when the run failed
    return result


def overhead_rows(
    levels: list[int], local: dict[int, dict[str, Any]], http: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for c in levels:
        engine, served = local[c], http[c]
        rows.append(
            {
                "concurrency": c,
                "requests": engine["requests"],
                "ttft_p50_ms_engine": engine["ttft_p50_ms"],
                "ttft_p50_ms_http": served["ttft_p50_ms"],
                "ttft_overhead_ms": served["ttft_p50_ms"] - engine["ttft_p50_ms"],
                "tok_s_engine": engine["tokens_per_s"],
                "tok_s_http_stream": served["tokens_per_s"],
                "ratio_stream": served["tokens_per_s"] / engine["tokens_per_s"],
                "tok_s_http_whole": served["tokens_per_s_whole"],
                "ratio_whole": served["tokens_per_s_whole"] / engine["tokens_per_s"],
                "client_cpu": served["client_cpu"],
            }
        )
        if engine.get("runs", 1) > 1:  # more than one run: the spread of each side
            rows[-1]["engine_range"] = engine["tokens_per_s_range"]
            rows[-1]["http_stream_range"] = served["tokens_per_s_range"]
        if "tokens_per_s_staggered" in engine:
            rows[-1]["tok_s_engine_staggered"] = engine["tokens_per_s_staggered"]
            rows[-1]["staggered_vs_lockstep"] = (
                engine["tokens_per_s_staggered"] / engine["tokens_per_s"]
            )
    return rows


def scaling_rows(
    levels: list[int],
    replicas: int,
    local: dict[int, dict[str, Any]],
    one: dict[int, dict[str, Any]],
    many: dict[int, dict[str, Any]],
) -> list[dict[str, Any]]:
    return [
        {
            "concurrency": c,
            "tok_s_engine": local[c]["tokens_per_s"],
            "tok_s_http_1_replica": one[c]["tokens_per_s"],
            f"tok_s_http_{replicas}_replicas": many[c]["tokens_per_s"],
            "growth": many[c]["tokens_per_s"] / one[c]["tokens_per_s"],
            f"ttft_p50_ms_{replicas}_replicas": many[c]["ttft_p50_ms"],
        }
        for c in levels
    ]


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--concurrency", default="1,16", help="comma list, e.g. 1,32,256")
    parser.add_argument(
        "--requests", type=int, default=None, help="per level; default max(32, 2 x concurrency)"
    )
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each level per side (medians, ranges)"
    )
    parser.add_argument("--routers", type=int, default=1, help="Router replicas")
    parser.add_argument(
        "--llm-replicas", type=int, default=1, help="N > 1: also measure N LLMServer replicas"
    )
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for serve run")
    parser.add_argument(
        "--engine-process",
        choices=("auto", "on", "off"),
        default="auto",
        help="the replicas' engine in a process of its own (auto: on with CUDA)",
    )
    parser.add_argument(
        "--engine-option",
        action="append",
        default=[],
        help="KEY=JSON engine field for both sides, e.g. mixed_graphs=true",
    )
    parser.add_argument(
        "--stagger-ms",
        type=float,
        default=0.0,
        help="also run in-process with client i starting i x this late (arrivals off step)",
    )
    parser.add_argument(
        "--max-running",
        type=int,
        default=None,
        help="the Routers' admission limit, cluster-wide (default: the app's)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=max(1, min(8, (os.cpu_count() or 1) // 4)),
        help="HTTP client processes (default: a quarter of the cores, 1 to 8)",
    )
    parser.add_argument(
        "--name", default=None, help="default serve_overhead_cpu.json / serve_overhead_gpu.json"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    levels = {
        c: args.requests or max(32, 2 * c) for c in (int(x) for x in args.concurrency.split(","))
    }
    env = parse_env(args.env)
    name = args.name or f"serve_overhead_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL)  # the GPU model shares it
    prompts = heldout_prompts(max(levels.values()), 96)
    texts = [decode_text(tokenizer, p) for p in prompts]
    ready_s = 600 if args.device == "cuda" else 300
    with tempfile.TemporaryDirectory(dir=ROOT, prefix="serve_overhead_model_") as tmp:
        model_dir = BUNDLED_MODEL
        if args.device == "cuda":
            from benchmarks.serve_gpu_model import save_gpu_model

            model_dir = save_gpu_model(Path(tmp) / GPU_MODEL_NAME, BUNDLED_MODEL)
        options = {k: json.loads(v) for k, v in parse_env(args.engine_option).items()}
        engine = engine_settings(args.device, options=options)
        local = run_in_process(
            model_dir, engine, texts, args.new_tokens, levels, args.stagger_ms / 1000, args.repeats
        )

        def config(llm_replicas: int) -> dict[str, Any]:
            return serve_config(
                args.device,
                model_dir,
                routers=args.routers,
                llm_replicas=llm_replicas,
                max_concurrency=max(levels),
                engine_process={"auto": None, "on": True, "off": False}[args.engine_process],
                engine_options=options,
                max_running=args.max_running,
            )

        http = run_over_http(
            config(1),
            texts,
            args.new_tokens,
            levels,
            whole=True,
            env=env,
            ready_s=ready_s,
            repeats=args.repeats,
            client_processes=args.client_procs,
        )
        many = None
        if args.llm_replicas > 1:
            many = run_over_http(
                config(args.llm_replicas),
                texts,
                args.new_tokens,
                levels,
                whole=False,
                env=env,
                ready_s=ready_s,
                repeats=args.repeats,
                client_processes=args.client_procs,
            )
    rows = overhead_rows(list(levels), local, http)
    payload: dict[str, Any] = {
        "hardware": hardware(),
        "new_tokens": args.new_tokens,
        "routers": args.routers,
        "repeats": args.repeats,
        "client_processes": args.client_procs,
        "max_running": args.max_running,
        "engine_process": args.engine_process,
        "env": env,
        "engine": engine,
        "results": rows,
    }
    if args.device == "cuda":
        payload["model"] = "random-weight Llama, benchmarks.gpu_suite.SHAPE_1B, bf16"
    print(
        f"\n{hardware()}; requests of {args.new_tokens} tokens, greedy, "
        f"speculation off; HTTP = Ray Serve + OpenAI API on this machine, {args.routers} "
        f"Router replica(s), env {env or 'none'}, {args.client_procs} client process(es)"
    )
    print_table(rows)
    if many is not None:
        scaling = scaling_rows(list(levels), args.llm_replicas, local, http, many)
        payload["llm_replicas"] = args.llm_replicas
        payload["replica_scaling"] = scaling
        print(f"\nHTTP (streamed) with 1 vs {args.llm_replicas} LLMServer replicas:")
        print_table(scaling)
    print(f"JSON: {write_json(name, payload)}")


if __name__ == "__main__":
    main()
