"""The engine-core link's cost per step, both ends, on a real socket: the old wire format (each
step's TokenDelta objects pickled, asyncio.Queue streams) against the current one (columns,
stats only where changed, one read per readable socket, DeltaStreams), step by step.

The steps are typical decode steps: every request one token, no logprobs, a few finished;
the stats change when a sequence enters a new KV block (16 tokens). Per step:
  core    - build the Step message, serialize it, send it (EngineCore._send_step)
  parent  - read the socket, deserialize, hand each delta to its request's stream
            (ProcessEngine._on_readable, called as the event loop would)
  callers - the requests' tasks wake and take their delta (the rest of the loop's work)
Both run in this one process, one after the other, each on its own socketpair and event-loop
streams; baseline and current alternate step by step.

    .venv/bin/python -m benchmarks.core_link [--sizes 1,32,256] [--steps 400] [--top-logprobs 5]

Prints a table, writes JSON (benchmarks/results/core_link_cpu.json).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import os
import socket
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.common import hardware, median, print_table, write_json
from workers.core_messages import Step
from workers.delta_streams import DeltaStream, deliver, delivered, stream_deltas
from workers.engine_core import EngineCore, Link
from workers.protocol import FinishReason, ReplicaStats, TokenDelta, TokenLogprob
from workers.socket_frames import FrameReader
from workers.step_items import StepItems

BLOCK_SIZE = 16
FOREVER = 10**9  # samples per stream: the finished deltas do not end the callers' streams
Items = list[tuple[str, TokenDelta | BaseException]]


# -- the steps ------------------------------------------------------------------------------


def step_deltas(n: int, step: int, top_logprobs: int) -> list[TokenDelta]:
    """A decode step of `n` requests: one token each, a few of them finished."""
    finished = {(step * 7 + k * 61) % n for k in range(n // 128 if n > 1 else 0)}
    if n >= 32 and not finished:
        finished = {step % n}
    deltas = []
    for i in range(n):
        token = (step * 31 + i * 17) % 50_000
        logprobs = None
        if top_logprobs:
            top = tuple((token + k, -0.25 * (k + 1)) for k in range(top_logprobs))
            logprobs = (TokenLogprob(token, -0.25, top),)
        deltas.append(
            TokenDelta(
                request_id=f"cmpl-{i:08x}-{i * 2654435761 % 2**32:08x}",
                index=0,
                token_ids=(token,),
                logprobs=logprobs,
                finish_reason=(FinishReason.STOP if i % 2 else FinishReason.LENGTH)
                if i in finished
                else None,
                num_prompt_tokens=40 + (i * 37) % 900,
                num_cached_tokens=(i % 3) * BLOCK_SIZE,
                num_generated_tokens=1 + (step + i) % 500,
            )
        )
    return deltas


def step_stats(n: int, step: int) -> ReplicaStats:
    """The engine's stats after `step`: a block is taken whenever a sequence fills one."""
    blocks = sum((step + i) // BLOCK_SIZE for i in range(min(n, BLOCK_SIZE)))
    blocks += (n // BLOCK_SIZE) * step if n > BLOCK_SIZE else 0
    return ReplicaStats(
        num_free_blocks=100_000 - blocks,
        num_total_blocks=100_000,
        num_running=n,
        num_waiting=0,
        prefix_cache_hit_rate=0.25,
    )


# -- the old wire format ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlainStep:
    """The Step message before columns: its TokenDeltas pickled as objects, stats always."""

    items: Items
    stats: ReplicaStats


class PlainCore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send_step(self, deltas: list[TokenDelta], stats: ReplicaStats) -> None:
        items: Items = [(d.request_id, delivered(d)) for d in deltas]
        self.conn.send(PlainStep(items, stats))


class PlainParent:
    def __init__(self, conn: Connection, streams: dict[str, asyncio.Queue[Any]]) -> None:
        self.conn = conn
        self.streams = streams
        self.stats: ReplicaStats | None = None

    def on_readable(self) -> None:
        while self.conn.poll():
            message = self.conn.recv()
            self.stats = message.stats
            for request_id, item in message.items:
                queue = self.streams.get(request_id)
                if queue is not None:
                    queue.put_nowait(item)


# -- the current one --------------------------------------------------------------------------


class _StatsOf:
    """The engine side EngineCore asks for stats (the rest of it is not used here)."""

    def __init__(self) -> None:
        self.current: ReplicaStats | None = None

    def stats(self) -> ReplicaStats | None:
        return self.current


class Core:
    def __init__(self, conn: Connection) -> None:
        self.engine = _StatsOf()
        self.core = EngineCore(self.engine, Link(conn), None)  # type: ignore[arg-type]

    def send_step(self, deltas: list[TokenDelta], stats: ReplicaStats) -> None:
        self.engine.current = stats
        self.core._send_step(deltas)


class Parent:
    def __init__(self, conn: Connection, streams: dict[str, DeltaStream]) -> None:
        self.reader = FrameReader(conn.fileno())
        self.streams = streams
        self.stats: ReplicaStats | None = None

    def on_readable(self) -> None:
        for message in self.reader.read():
            assert isinstance(message, Step)
            if message.stats is not None:
                self.stats = message.stats
            step = StepItems.of(message.items)
            deliver(self.streams, step.request_ids, step.values)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Lane:
    """One wire format, end to end: its core side, its parent side, and its callers' count."""

    name: str
    send_step: Callable[[list[TokenDelta], ReplicaStats], None]
    on_readable: Callable[[], None]
    taken: list[int]
    tasks: list[asyncio.Task[None]]
    conns: tuple[Connection, Connection]
    times: dict[str, list[float]]
    sizes: list[int]


def _pair() -> tuple[Connection, Connection]:
    a, b = socket.socketpair()
    pair = Connection(a.detach()), Connection(b.detach())
    return pair


async def _take(deltas: Any, taken: list[int]) -> None:
    async for _ in deltas:
        taken[0] += 1


def plain_link(request_ids: list[str]) -> Lane:
    core_end, parent_end = _pair()
    queues: dict[str, asyncio.Queue[Any]] = {r: asyncio.Queue() for r in request_ids}
    taken = [0]
    tasks = [
        asyncio.create_task(_take(stream_deltas(r, q, FOREVER, queues, _no_abort), taken))
        for r, q in queues.items()
    ]
    parent = PlainParent(parent_end, queues)
    return Lane(
        "pickled TokenDelta",
        PlainCore(core_end).send_step,
        parent.on_readable,
        taken,
        tasks,
        (core_end, parent_end),
        {"core": [], "parent": [], "callers": []},
        [],
    )


def columns_link(request_ids: list[str]) -> Lane:
    core_end, parent_end = _pair()
    loop = asyncio.get_running_loop()
    streams = {r: DeltaStream(loop, FOREVER) for r in request_ids}
    taken = [0]
    tasks = [
        asyncio.create_task(_take(s.deltas(r, streams, _no_abort), taken))
        for r, s in streams.items()
    ]
    parent = Parent(parent_end, streams)
    return Lane(
        "columns",
        Core(core_end).send_step,
        parent.on_readable,
        taken,
        tasks,
        (core_end, parent_end),
        {"core": [], "parent": [], "callers": []},
        [],
    )


def _no_abort(request_id: str) -> None:
    pass


def _unread(conn: Connection) -> int:
    """Bytes waiting on the socket (the message's size on the wire)."""
    buf = bytearray(4)
    fcntl.ioctl(conn.fileno(), termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


async def one_step(link: Lane, deltas: list[TokenDelta], stats: ReplicaStats) -> None:
    link.taken[0] = 0
    start = time.perf_counter()
    link.send_step(deltas, stats)
    sent = time.perf_counter()
    size = _unread(link.conns[1])
    read = time.perf_counter()
    link.on_readable()
    dispatched = time.perf_counter()
    while link.taken[0] < len(deltas):
        await asyncio.sleep(0)
    done = time.perf_counter()
    link.times["core"].append(sent - start)
    link.times["parent"].append(dispatched - read)
    link.times["callers"].append(done - dispatched)
    link.sizes.append(size)


async def run_size(n: int, steps: int, top_logprobs: int) -> list[dict[str, Any]]:
    request_ids = [d.request_id for d in step_deltas(n, 0, 0)]
    links = [plain_link(request_ids), columns_link(request_ids)]
    await asyncio.sleep(0)  # the callers start waiting
    warmup = 20
    for step in range(warmup + steps):
        deltas, stats = step_deltas(n, step, top_logprobs), step_stats(n, step)
        for link in links if step % 2 else links[::-1]:
            await one_step(link, deltas, stats)
        if step == warmup - 1:
            for link in links:
                for values in link.times.values():
                    values.clear()
                link.sizes.clear()
    rows = []
    for link in links:
        for task in link.tasks:
            task.cancel()
        await asyncio.gather(*link.tasks, return_exceptions=True)
        for conn in link.conns:
            conn.close()
        core, parent, callers = (median(link.times[k]) * 1e6 for k in ("core", "parent", "callers"))
        rows.append(
            {
                "deltas": n,
                "top_logprobs": top_logprobs,
                "encoding": link.name,
                "core_us": core,
                "parent_us": parent,
                "callers_us": callers,
                "link_us": core + parent,
                "total_us": core + parent + callers,
                "bytes": int(median([float(s) for s in link.sizes])),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,32,256")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--top-logprobs", default="0,5", help="cases: 0 = no logprobs")
    parser.add_argument("--out", default="core_link_cpu.json")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()  # as the engine core and the replica do (workers/gc_freeze.py)
    cases = [(int(n), 0) for n in args.sizes.split(",")]
    for top in (int(t) for t in args.top_logprobs.split(",")):
        if top:
            cases.append((max(n for n, _ in cases), top))
    rows: list[dict[str, Any]] = []
    for n, top in cases:
        rows.extend(asyncio.run(run_size(n, args.steps, top)))
    table = []
    for old, new in zip(rows[::2], rows[1::2], strict=True):
        for row in (old, new):
            table.append(
                {
                    "deltas": row["deltas"]
                    if not row["top_logprobs"]
                    else f"{row['deltas']} + top-{row['top_logprobs']} logprobs",
                    "encoding": row["encoding"],
                    "core us": f"{row['core_us']:.1f}",
                    "parent us": f"{row['parent_us']:.1f}",
                    "link us": f"{row['link_us']:.1f}",
                    "callers us": f"{row['callers_us']:.1f}",
                    "total us": f"{row['total_us']:.1f}",
                    "bytes": row["bytes"],
                }
            )
        table.append(
            {
                "deltas": "",
                "encoding": "ratio old/new",
                "core us": f"{old['core_us'] / new['core_us']:.2f}x",
                "parent us": f"{old['parent_us'] / new['parent_us']:.2f}x",
                "link us": f"{old['link_us'] / new['link_us']:.2f}x",
                "callers us": f"{old['callers_us'] / new['callers_us']:.2f}x",
                "total us": f"{old['total_us'] / new['total_us']:.2f}x",
                "bytes": f"{old['bytes'] / new['bytes']:.2f}x",
            }
        )
    print_table(table)
    payload = {"hardware": hardware(), "steps": args.steps, "load_average": os.getloadavg()}
    write_json(args.out, {**payload, "rows": rows})


if __name__ == "__main__":
    main()
