"""Where an engine step goes when arrivals spread: the engine alone, driven by closed-loop
clients in one synchronous loop (no asyncio, no HTTP), in lockstep (every client's first
request at step 0, as serve_overhead's in-process run) and spread (`--per-step` clients
joining per step, as HTTP delivers them). Each client sends its next request the moment the
step that finished its last one returns.

Per step kind (pure decode, or mixed: with prefill chunks): steps, wall ms (between step()
returns), host ms (schedule, launch and update on the host), device ms (CUDA events around
each launch: the step's own span on the stream) and the device's idle ms before it; the
mixed steps' graph shapes (N tokens, S sequences) with the real tokens they carried; then
the CUDA kernels of a few steady spread steps, replayed and eager.

    python -m benchmarks.profile_spread [--clients 256] [--requests 1024] [--per-step 4]
        [--host]   (the host's Python under cProfile instead of the kernels)

Prints tables (a diagnostic; figures of record come from benchmarks.serve_overhead).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import median, print_table
from benchmarks.gpu_suite import engine_for, save_model
from workers.engine import LLMEngine
from workers.mixed_rows import smallest_shape
from workers.model_runner import PendingOutput
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams
from workers.scheduler_output import SchedulerOutput

VOCAB = 32000  # SHAPE_1B


@dataclass
class StepLog:
    """What each launched step carried and cost, in launch order."""

    kinds: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)
    host: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def instrument(engine: LLMEngine, log: StepLog) -> Callable[[], None]:
    """Wrap the engine's host phases (timers) and launches (events, step composition);
    returns the undo."""
    scheduler, runner = engine.scheduler, engine.runner

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                log.host[name] += time.perf_counter() - t0

        return wrapper

    launch = runner.launch

    def launched(step: SchedulerOutput) -> PendingOutput:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        out = launch(step)
        end.record()
        log.host["launch"] += time.perf_counter() - t0
        if not step.empty:
            log.kinds.append("decode" if step.num_tokens == step.num_seqs else "mixed")
            log.tokens.append(step.num_tokens)
            log.seqs.append(step.num_seqs)
            log.events.append((start, end))
        return out

    scheduler.schedule = timed("schedule", scheduler.schedule)  # type: ignore[method-assign]
    scheduler.schedule_ahead = timed(  # type: ignore[method-assign]
        "schedule_ahead", scheduler.schedule_ahead
    )
    scheduler.update_from_output = timed(  # type: ignore[method-assign]
        "update", scheduler.update_from_output
    )
    runner.launch = launched  # type: ignore[method-assign]

    def undo() -> None:  # the instance attributes go; the methods show through again
        del scheduler.schedule, scheduler.schedule_ahead, scheduler.update_from_output
        del runner.launch

    return undo


def closed_loop(
    engine: LLMEngine,
    clients: int,
    requests: int,
    prompt: int,
    new_tokens: int,
    per_step: int | None,
    tag: str,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float, int, list[float], float]:
    """(seconds, output tokens, wall ms of each step(), TTFT p50 ms) of `requests` requests over
    `clients` closed-loop clients; per_step None: all clients start at step 0, else that
    many join per step. on_step(i) runs before step i."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    g = torch.Generator().manual_seed(len(tag))
    sent = 0
    sent_at: dict[str, float] = {}
    ttfts: list[float] = []

    def send() -> None:
        nonlocal sent
        ids = torch.randint(3, VOCAB, (prompt,), generator=g).tolist()
        rid = f"{tag}-{sent}"
        sent_at[rid] = time.perf_counter()
        engine.add_request(GenerateRequest(rid, tuple(ids), params))
        sent += 1

    joined = 0
    tokens = 0
    walls: list[float] = []
    start = last = time.perf_counter()
    step = 0
    while sent < requests or engine.has_unfinished():
        target = clients if per_step is None else min(clients, joined + per_step)
        while joined < target and sent < requests:
            send()
            joined += 1
        if on_step is not None:
            on_step(step)
        for delta in engine.step():
            tokens += len(delta.token_ids)
            if delta.token_ids and delta.request_id in sent_at:
                ttfts.append(1000 * (time.perf_counter() - sent_at.pop(delta.request_id)))
            if delta.finish_reason is not None and sent < requests:
                send()
        now = time.perf_counter()
        walls.append(1000 * (now - last))
        last = now
        step += 1
    torch.cuda.synchronize()
    return time.perf_counter() - start, tokens, walls, median(ttfts)


def step_rows(log: StepLog, walls: list[float], skip: int) -> list[dict[str, Any]]:
    """Per kind: steps, median wall / device / idle-before ms (from step `skip` on)."""
    torch.cuda.synchronize()
    device = [s.elapsed_time(e) for s, e in log.events]
    idle = [0.0] + [
        e0.elapsed_time(s1) for (_, e0), (s1, _) in zip(log.events, log.events[1:], strict=False)
    ]
    rows = []
    for kind in ("decode", "mixed"):
        at = [i for i, k in enumerate(log.kinds) if k == kind and i >= skip]
        if not at:
            continue
        rows.append(
            {
                "kind": kind,
                "steps": len(at),
                "tokens": median([float(log.tokens[i]) for i in at]),
                "seqs": median([float(log.seqs[i]) for i in at]),
                "wall_ms": median([walls[i] for i in at if i < len(walls)]),
                "device_ms": median([device[i] for i in at]),
                "idle_ms": median([idle[i] for i in at]),
            }
        )
    return rows


def shape_rows(engine: LLMEngine, log: StepLog) -> list[dict[str, Any]]:
    graphs = engine.runner.graphs
    mixed = graphs.mixed if graphs is not None else None
    if mixed is None:
        return []
    shapes: Counter[tuple[int, int]] = Counter()
    real: dict[tuple[int, int], list[float]] = defaultdict(list)
    for kind, n, s in zip(log.kinds, log.tokens, log.seqs, strict=True):
        if kind == "mixed" and mixed.fits(n, s):
            shape = smallest_shape(mixed.shapes, n, s)
            shapes[shape] += 1
            real[shape].append(n)
    return [
        {"shape": f"{n}x{s}", "steps": count, "median_real_tokens": median(real[n, s])}
        for (n, s), count in sorted(shapes.items())
    ]


def run_pattern(
    engine: LLMEngine, args: argparse.Namespace, per_step: int | None, tag: str
) -> dict[str, Any]:
    log = StepLog()
    undo = instrument(engine, log)
    seconds, tokens, walls, ttft = closed_loop(
        engine, args.clients, args.requests, args.prompt, args.new_tokens, per_step, tag
    )
    undo()
    skip = len(log.kinds) // 4  # past the ramp
    steps = len(walls)
    print(
        f"\n== {tag}: {tokens / seconds:.0f} tok/s, TTFT p50 {ttft:.1f} ms, {steps} steps, "
        f"{seconds:.2f} s =="
    )
    print_table(step_rows(log, walls, skip))
    print_table([{"phase": k, "ms_per_step": 1000 * v / steps} for k, v in log.host.items()])
    shapes = shape_rows(engine, log)
    if shapes:
        print_table(shapes)
    return {"tok_s": tokens / seconds, "ttft_p50_ms": ttft}


def steady_spread(
    engine: LLMEngine,
    args: argparse.Namespace,
    label: str,
    steps: int,
    begin: Callable[[], None],
    end: Callable[[], None],
) -> None:
    """A spread closed loop of 3 requests per client: begin() before its first steady step
    (past the ramp and one turnover), end() after `steps` of them."""
    first = args.new_tokens + args.clients // args.per_step + 8

    def on_step(i: int) -> None:
        if i == first:
            begin()
        elif i == first + steps:
            end()

    closed_loop(
        engine,
        args.clients,
        args.clients * 3,
        args.prompt,
        args.new_tokens,
        args.per_step,
        label,
        on_step,
    )


def kernels(engine: LLMEngine, args: argparse.Namespace, label: str) -> None:
    """CUDA kernels by total time over 6 steady spread steps."""
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])

    def begin() -> None:
        torch.cuda.synchronize()
        prof.__enter__()

    def end() -> None:
        torch.cuda.synchronize()
        prof.__exit__(None, None, None)

    steady_spread(engine, args, label, 6, begin, end)
    print(f"\n== {label}: kernels of 6 steady spread steps ==")
    table = prof.key_averages().table(
        sort_by="cuda_time_total", row_limit=args.top, max_name_column_width=70
    )
    print(table)


def host_profile(engine: LLMEngine, args: argparse.Namespace) -> None:
    """Python functions by own and by cumulative time over 30 steady spread steps."""
    prof = cProfile.Profile()
    steady_spread(engine, args, "host", 30, prof.enable, prof.disable)
    for key in ("tottime", "cumulative"):
        print(f"\n== host functions of 30 steady spread steps, by {key} ==")
        pstats.Stats(prof).sort_stats(key).print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--per-step", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--host", action="store_true", help="only the tables and cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(Path(tmp) / "model")
        engine = engine_for(model_dir, graphs=True)
        closed_loop(engine, 32, 64, args.prompt, 8, None, "warm")
        lockstep = run_pattern(engine, args, None, "lockstep")
        spread = run_pattern(engine, args, args.per_step, "spread")
        print(f"\nspread / lockstep: {spread['tok_s'] / lockstep['tok_s']:.2f}x")
        if args.host:
            host_profile(engine, args)
            return
        kernels(engine, args, "replayed")
        del engine
        torch.cuda.empty_cache()
        kernels(engine_for(model_dir, graphs=True, mixed=False), args, "eager mixed")


if __name__ == "__main__":
    main()
