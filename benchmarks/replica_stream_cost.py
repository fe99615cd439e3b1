"""The replica's event-loop CPU per streamed token, between the engine core's deltas and the
bytes of the Serve stream to the Router, without Ray: N concurrent streams fed by a fake
engine that delivers one delta per stream per step, at a fixed step rate, through the
objects ProcessEngine uses (`deliver` into DeltaStreams), each stream consumed as LLMServer
consumes it (`replica_stream` under one MessageBudget, every batch `pack`ed).

Three paths side by side, alternating run by run in one process:
  old  - the stream handed out as a per-delta async generator (DeltaStream.deltas), so
         `coalesce` runs a reader task per stream that moves each delta into an
         asyncio.Queue; each batch pickled as TokenDelta objects (the former `pack`)
  feed - the stream handed out as a DeltaFeed (what ProcessEngine.open returns), which the
         pacing drains in one go per batch (router/coalesce.py coalesce_pending); objects
  new  - the feed, each batch `pack`ed as it is now (a tuple of field values per delta)
Per run: the loop thread's CPU (time.thread_time) over the whole run, divided by the tokens
delivered; `deliver` alone (the same for both paths) is timed as well. Batches per stream
are reported to show both paths pace alike.

    .venv/bin/python -m benchmarks.replica_stream_cost [--streams 32,256] [--tokens 200]
        [--step-ms 10] [--repeats 5]

Prints a table, writes JSON (benchmarks/results/replica_stream_cost_cpu.json).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import hardware, median, print_table, write_json
from router.replica_stream import MessageBudget, pack, replica_stream
from workers.delta_feed import DeltaFeed
from workers.delta_streams import DeltaStream, deliver
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams

PATHS = ("old", "feed", "new")


class FakeEngine:
    """ProcessEngine's `open` and `abort` without the core: the request's DeltaStream is
    registered where `deliver` finds it; `path` picks what `open` hands out."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.streams: dict[str, DeltaStream] = {}
        self.aborted: list[str] = []

    async def open(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]:
        stream = DeltaStream(asyncio.get_running_loop(), spec.sampling.n)
        self.streams[spec.request_id] = stream
        if self.path == "old":  # what ProcessEngine.open returned before the DeltaFeed
            return stream.deltas(spec.request_id, self.streams, self.abort)
        return DeltaFeed(stream, spec.request_id, self.streams, self.abort)

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def request_ids(n: int) -> list[str]:
    return [f"cmpl-{i:08x}-{i * 2654435761 % 2**32:08x}" for i in range(n)]


def steps(ids: list[str], tokens: int) -> list[list[TokenDelta]]:
    """Every step's deltas, made before the clock starts: one token per stream per step,
    the last step finishing every stream."""
    return [
        [
            TokenDelta(
                request_id=rid,
                index=0,
                token_ids=((step * 31 + i * 17) % 50_000,),
                finish_reason=FinishReason.LENGTH if step == tokens - 1 else None,
                num_prompt_tokens=40 + (i * 37) % 900,
                num_generated_tokens=step + 1,
            )
            for i, rid in enumerate(ids)
        ]
        for step in range(tokens)
    ]


@dataclass
class Run:
    path: str
    streams: int
    cpu_s: float = 0.0
    deliver_s: float = 0.0
    tokens: int = 0
    batches: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    late_steps: int = 0


def pack_objects(batch: list[TokenDelta]) -> bytes:
    """The former `pack`: the TokenDeltas pickled as objects."""
    return pickle.dumps(batch, protocol=5)


async def generate_packed(
    engine: FakeEngine, spec: GenerateRequest, budget: MessageBudget
) -> AsyncIterator[bytes]:
    """LLMServer.generate and generate_packed, less the caller watch and the metrics."""
    encode = pack if engine.path == "new" else pack_objects
    async with aclosing(replica_stream(engine, spec, budget)) as batches:
        async for batch in batches:
            yield encode(batch)


async def packed(engine: FakeEngine, spec: GenerateRequest, budget: MessageBudget) -> list[int]:
    """What Ray Serve would send of one stream: the size of each message."""
    return [len(data) async for data in generate_packed(engine, spec, budget)]


async def one_run(path: str, n: int, tokens: int, step_s: float) -> Run:
    engine = FakeEngine(path)
    ids = request_ids(n)
    all_steps = steps(ids, tokens)
    budget = MessageBudget()
    params = SamplingParams(max_tokens=tokens, ignore_eos=True)
    gc.collect()
    run = Run(path, n)
    loop = asyncio.get_running_loop()
    start_cpu, start = time.thread_time(), loop.time()
    consumers = [
        asyncio.create_task(packed(engine, GenerateRequest(rid, (1, 2, 3), params), budget))
        for rid in ids
    ]
    while len(engine.streams) < n:  # every stream opened (and its first [] sent)
        await asyncio.sleep(0)
    due = loop.time()
    for deltas in all_steps:
        due += step_s
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            run.late_steps += 1
            await asyncio.sleep(0)
        t = time.thread_time()
        deliver(engine.streams, ids, deltas)
        run.deliver_s += time.thread_time() - t
    sizes = await asyncio.gather(*consumers)
    run.cpu_s = time.thread_time() - start_cpu
    run.wall_s = loop.time() - start
    run.tokens = n * tokens
    run.batches = [len(s) - 1 for s in sizes]  # less the acceptance marker
    assert not engine.streams and not engine.aborted, "every stream ends on its own"
    return run


def _us(seconds: float, tokens: int) -> float:
    return seconds / tokens * 1e6


def summarize(runs: list[Run]) -> dict[str, Any]:
    per_token = [_us(r.cpu_s, r.tokens) for r in runs]
    stream_part = [_us(r.cpu_s - r.deliver_s, r.tokens) for r in runs]
    deliver_part = [_us(r.deliver_s, r.tokens) for r in runs]
    return {
        "path": runs[0].path,
        "streams": runs[0].streams,
        "repeats": len(runs),
        "cpu_us_per_token": per_token,
        "cpu_us_per_token_median": median(per_token),
        "cpu_us_per_token_range": [min(per_token), max(per_token)],
        "deliver_us_per_token_median": median(deliver_part),
        "rest_us_per_token_median": median(stream_part),
        "batches_per_stream_median": median([median([float(b) for b in r.batches]) for r in runs]),
        "late_steps": [r.late_steps for r in runs],
        "wall_s": [r.wall_s for r in runs],
    }


def table_row(s: dict[str, Any]) -> dict[str, Any]:
    low, high = s["cpu_us_per_token_range"]
    return {
        "streams": s["streams"],
        "path": s["path"],
        "loop us/token": f"{s['cpu_us_per_token_median']:.2f}",
        "range": f"{low:.2f}-{high:.2f}",
        "deliver us": f"{s['deliver_us_per_token_median']:.2f}",
        "rest us": f"{s['rest_us_per_token_median']:.2f}",
        "batches/stream": f"{s['batches_per_stream_median']:.0f}",
        "late steps": max(s["late_steps"]),
    }


def _ratio(old: dict[str, Any], new: dict[str, Any], key: str) -> str:
    return f"{old[key] / new[key]:.2f}x"


def run_size(n: int, tokens: int, step_s: float, repeats: int) -> list[dict[str, Any]]:
    runs: dict[str, list[Run]] = {p: [] for p in PATHS}
    for repeat in range(repeats + 1):  # the first round warms up
        for path in PATHS[repeat % len(PATHS) :] + PATHS[: repeat % len(PATHS)]:
            run = asyncio.run(one_run(path, n, tokens, step_s))
            if repeat:
                runs[path].append(run)
    return [summarize(runs[p]) for p in PATHS]


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="32,256")
    parser.add_argument("--tokens", type=int, default=200, help="per stream")
    parser.add_argument("--step-ms", type=float, default=10.0, help="engine step period")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="replica_stream_cost_cpu.json")
    args = parser.parse_args(argv)
    gc.collect()
    gc.freeze()  # as the replica does (workers/gc_freeze.py)
    rows: list[dict[str, Any]] = []
    for n in (int(s) for s in args.streams.split(",")):
        rows.extend(run_size(n, args.tokens, args.step_ms / 1e3, args.repeats))
    table = []
    for at in range(0, len(rows), len(PATHS)):
        by_path = {r["path"]: r for r in rows[at : at + len(PATHS)]}
        table += [table_row(by_path[p]) for p in PATHS]
        old, new = by_path["old"], by_path["new"]
        blank = dict.fromkeys(table[-1], "")
        table.append(
            {
                **blank,
                "path": "old/new",
                "loop us/token": _ratio(old, new, "cpu_us_per_token_median"),
                "rest us": _ratio(old, new, "rest_us_per_token_median"),
            }
        )
    print_table(table)
    payload = {
        "hardware": hardware(),
        "tokens_per_stream": args.tokens,
        "step_ms": args.step_ms,
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    out(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
