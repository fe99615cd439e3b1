"""Closed-loop OpenAI-API load for benchmarks.serve_overhead, spread over client processes.

One Python process parses every SSE event of every stream; should it saturate, the run
measures the load generator, its late reads showing as the server's TTFT. `HttpLoad(processes)`
splits the clients and the requests over that many processes (spawned once, reused for every
run); once each has sent its warm-up request, all start at one wall-clock instant, and the
run ends with the last request. Each run reports the busiest client process's CPU share, so
a saturated load generator shows (on the H200 host at c=256, one process was 0.48 of a core
busy, the busiest of four 0.16: not the limit there).
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import aiohttp

from benchmarks.common import median
from benchmarks.serve_process import URL

START_LEAD_S = 0.2  # from the last process ready to the common start
_ready: Synchronized[int]  # in each client process: how many processes are warm
_start: Synchronized[float]  # ... and the common start (time.time()), 0 until set


async def one_http(
    client: aiohttp.ClientSession, model: str, text: str, new_tokens: int, stream: bool
) -> tuple[float, int]:
    """(TTFT, tokens) streamed; (latency, tokens) whole. Tokens as the usage reports."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": text,
        "max_tokens": new_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }
    start = time.perf_counter()
    if not stream:
        async with client.post(f"{URL}/v1/completions", json=body) as response:
            response.raise_for_status()
            usage = (await response.json())["usage"]
        return time.perf_counter() - start, usage["completion_tokens"]
    body["stream_options"] = {"include_usage": True}
    first = math.nan
    tokens = 0
    async with client.post(f"{URL}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for raw in response.content:  # one SSE line at a time
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(raw[6:])
            if "error" in chunk:
                raise RuntimeError(f"the stream failed: {chunk['error']}")
            if math.isnan(first) and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return first, tokens


def _share(ready: Synchronized[int], start: Synchronized[float]) -> None:
    global _ready, _start
    _ready, _start = ready, start


async def _clients(
    model: str, texts: list[str], new_tokens: int, stream: bool, clients: int
) -> dict[str, Any]:
    # aiohttp, not httpx: at 256 streams httpx's client costs more CPU per SSE event than
    # the server does (about 9x aiohttp's, measured), and would be what is measured
    connector = aiohttp.TCPConnector(limit=0)  # one connection per client, no cap
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        await one_http(client, model, texts[0], 4, stream=True)  # warm-up
        with _ready.get_lock():
            _ready.value += 1
        while not _start.value:
            await asyncio.sleep(0.001)
        late_s = time.time() - _start.value
        await asyncio.sleep(max(0.0, -late_s))
        cpu = time.process_time()
        pending = iter(texts)  # shared: each request is sent once
        results: list[tuple[float, int]] = []

        async def closed_loop() -> None:
            for text in pending:
                results.append(await one_http(client, model, text, new_tokens, stream))

        await asyncio.gather(*(closed_loop() for _ in range(clients)))
        return {
            "results": results,
            "end": time.time(),
            "cpu_s": time.process_time() - cpu,
            "late_s": late_s,
        }


def _process(*args: Any) -> dict[str, Any]:
    return asyncio.run(_clients(*args))


class HttpLoad:
    """`processes` client processes; run() is one closed-loop measurement over them."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._ready = context.Value("i", 0)
        self._start = context.Value("d", 0.0)
        self._pool = ProcessPoolExecutor(
            processes, context, initializer=_share, initargs=(self._ready, self._start)
        )

    def run(
        self, model: str, texts: list[str], new_tokens: int, stream: bool, concurrency: int
    ) -> dict[str, Any]:
        """`concurrency` clients over min(processes, concurrency) processes, each sending
        its next request when its last one ended, until every text was sent once."""
        n = min(self.processes, concurrency)
        self._ready.value = 0
        self._start.value = 0.0
        jobs = [
            self._pool.submit(
                _process,
                model,
                texts[k::n],
                new_tokens,
                stream,
                concurrency // n + (k < concurrency % n),
            )
            for k in range(n)
        ]
        while self._ready.value < n:
            if any(job.done() for job in jobs):  # one failed before its start
                break
            time.sleep(0.001)
        start_at = self._start.value = time.time() + START_LEAD_S
        parts = [job.result() for job in jobs]
        late = max(p["late_s"] for p in parts)
        if late > 0:
            raise RuntimeError(f"a client process started {late:.3f} s late; raise the lead")
        elapsed = max(p["end"] for p in parts) - start_at
        results = [r for p in parts for r in p["results"]]
        return {
            "ttft_p50_ms": 1000 * median([r[0] for r in results]),
            "tokens_per_s": sum(r[1] for r in results) / elapsed,
            "tokens": sum(r[1] for r in results),
            "requests": len(results),
            "client_cpu": max(p["cpu_s"] for p in parts) / elapsed,
        }

    def close(self) -> None:
        self._pool.shutdown()
