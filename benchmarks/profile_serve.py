"""Where the Serve path spends its CPU: py-spy samples every Serve process (the HTTP proxy,
each Router and LLMServer replica, each engine-core process) and the load client while
`--concurrency` streams run, then prints each process's busiest threads and functions.

The app and the load are benchmarks.serve_overhead's (same config, prompts and client).
Writes the raw stacks (py-spy's collapsed format, one file per process) and a JSON summary
under `--out`. Needs py-spy on PATH (benchmarks/gpu_site.sh packs it for the GPU machine).

    python -m benchmarks.profile_serve --device cuda --concurrency 256 --seconds 15 --out OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from transformers import AutoTokenizer

from benchmarks.common import decode_text
from benchmarks.http_load import one_http
from benchmarks.serve_process import (
    BUNDLED_MODEL,
    GPU_MODEL_NAME,
    ROOT,
    serve_config,
    served_model_name,
    serving,
)
from benchmarks.spec_decode import heldout_prompts

# process title (as Ray sets it) -> short name
ROLES = {
    "ray::ProxyActor": "proxy",
    "ray::ServeReplica:tandem:Router": "router",
    "ray::ServeReplica:tandem:LLMServer": "llm",
    "-m workers.engine_core": "core",  # an LLMServer's engine-core process
}


def serve_processes() -> dict[str, int]:
    """short name (with an index where a role has several) -> pid."""
    found: dict[str, int] = {}
    lines = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in lines.splitlines():
        pid, _, args = line.strip().partition(" ")
        for title, role in ROLES.items():
            if title in args:
                index = sum(1 for name in found if name.startswith(role))
                found[f"{role}{index}"] = int(pid)
    return found


def record(pids: dict[str, int], seconds: float, rate: int, out: Path) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or "py-spy"
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(out / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for name, pid in pids.items()
    ]


def summarize(path: Path, top: int) -> dict[str, Any]:
    """Per thread: samples; per function: self and inclusive samples (active samples only)."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        own[_short(frames[-1])] += n
        for frame in {_short(f) for f in frames[1:]}:
            inclusive[frame] += n
    return {
        "samples": total,
        "threads": threads.most_common(6),
        "self": own.most_common(top),
        "inclusive": inclusive.most_common(top),
    }


def _short(frame: str) -> str:
    """'fn (path/to/module.py:12)' -> 'fn (module.py:12)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


async def load(model: str, texts: list[str], concurrency: int, until: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    tokens = 0
    requests = 0
    async with aiohttp.ClientSession(connector=connector) as client:

        async def user(i: int) -> None:
            nonlocal tokens, requests
            while time.monotonic() < until:
                _, n = await one_http(client, model, texts[i % len(texts)], 64, True)
                tokens += n
                requests += 1

        start = time.monotonic()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        elapsed = time.monotonic() - start
    return {"tokens_per_s": tokens / elapsed, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=15.0, help="of sampling")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--routers", type=int, default=1)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for serve run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(pair.split("=", 1) for pair in args.env)
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL)
    texts = [decode_text(tokenizer, p) for p in heldout_prompts(256, 96)]
    with tempfile.TemporaryDirectory(dir=ROOT, prefix="profile_serve_") as tmp:
        model_dir = BUNDLED_MODEL
        if args.device == "cuda":
            from benchmarks.serve_gpu_model import save_gpu_model

            model_dir = save_gpu_model(Path(tmp) / GPU_MODEL_NAME, BUNDLED_MODEL)
        config = serve_config(
            args.device, model_dir, routers=args.routers, max_concurrency=args.concurrency
        )
        path = Path(tmp) / "serve.yaml"
        path.write_text(yaml.safe_dump(config))
        with serving(path, env, 600.0, Path(tmp) / "serve.log"):
            model = served_model_name(config)
            warm_until = time.monotonic() + 3.0  # the graphs and the connections warm
            asyncio.run(load(model, texts, args.concurrency, warm_until))
            pids = {**serve_processes(), "client": os.getpid()}
            until = time.monotonic() + args.seconds + 2.0
            spies = record(pids, args.seconds, args.rate, args.out)
            measured = asyncio.run(load(model, texts, args.concurrency, until))
            for spy in spies:
                spy.wait(timeout=60)
    summary = {"concurrency": args.concurrency, "env": env, "load": measured, "processes": {}}
    print(f"c={args.concurrency} env={env or 'none'}: {measured}")
    for name in pids:
        raw = args.out / f"{name}.txt"
        if not raw.exists():
            print(f"{name}: no profile")
            continue
        s = summarize(raw, args.top)
        summary["processes"][name] = s
        busy = s["samples"] / (args.seconds * args.rate)
        print(f"\n== {name}: {s['samples']} samples ({busy:.2f} of a thread busy)")
        print("threads: " + "; ".join(f"{t} {n}" for t, n in s["threads"]))
        print("self:    " + "; ".join(f"{f} {n}" for f, n in s["self"]))
        print("incl:    " + "; ".join(f"{f} {n}" for f, n in s["inclusive"]))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
