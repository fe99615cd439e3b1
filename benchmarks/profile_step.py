"""Where a step's time goes on the GPU: host work vs graph replay, kernels by CUDA time, and
prefill vs decode steps of the serving workload.

    python -m benchmarks.profile_step [--serving N] [--mixed]

Prints tables only (a diagnostic to steer kernel work; figures of record come from
benchmarks.gpu_suite).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import median, print_table
from benchmarks.gpu_suite import adapter_engine, engine_for, save_model, serving_workload
from workers.engine import LLMEngine
from workers.model_runner import PendingOutput
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams
from workers.scheduler_output import SchedulerOutput


def fill(engine: LLMEngine, batch: int, context: int, adapters: int = 0) -> None:
    """batch requests with `context`-token prompts, prefilled, ready to decode; with
    adapters, request i uses adapter a{i % adapters}."""
    params = SamplingParams(max_tokens=1000, temperature=0, ignore_eos=True)
    g = torch.Generator().manual_seed(batch)
    for i in range(batch):
        prompt = torch.randint(3, 32000, (context,), generator=g).tolist()
        adapter = f"a{i % adapters}" if adapters else None
        rid = f"p{batch}-{context}-{i}"
        engine.add_request(GenerateRequest(rid, tuple(prompt), params, adapter=adapter))
    while engine.scheduler.waiting or any(
        s.num_computed_tokens < s.num_tokens - 1 for r in engine.scheduler.running for s in r.seqs
    ):
        engine.step()


def clear(engine: LLMEngine) -> None:
    for r in list(engine.scheduler.running):
        engine.abort(r.request_id)


def split_row(engine: LLMEngine, batch: int, context: int) -> dict[str, object]:
    fill(engine, batch, context)
    steps = []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        engine.step()
        steps.append(time.perf_counter() - t0)
    graphs = engine.runner.graphs
    assert graphs is not None
    bucket = next(b for b in graphs.buckets if b >= batch)
    replays = []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        graphs.graphs[bucket, 1].replay()
        torch.cuda.synchronize()
        replays.append(time.perf_counter() - t0)
    clear(engine)
    step_ms, replay_ms = 1000 * median(steps), 1000 * median(replays)
    return {
        "batch": batch,
        "context": context,
        "step_ms": step_ms,
        "replay_ms": replay_ms,
        "host_ms": step_ms - replay_ms,
    }


def mixed_row(engine: LLMEngine, decodes: int, prompt: int, repeats: int = 20) -> dict[str, object]:
    """One mixed step: `decodes` running sequences plus a new `prompt`-token request, timed
    from launch to the device being done (eager, or a mixed CUDA graph when the engine has
    them); the new request is aborted after its prefill and the next one added."""
    fill(engine, decodes, prompt)
    launch = engine.runner.launch
    times: list[float] = []
    replayed = [0]
    mixed = engine.runner.graphs.mixed if engine.runner.graphs is not None else None
    if mixed is not None:
        run = mixed.run

        def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
            replayed[0] += 1
            return run(*args, **kwargs)

        mixed.run = counted  # type: ignore[method-assign]

    def timed(step: SchedulerOutput) -> PendingOutput:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = launch(step)
        torch.cuda.synchronize()
        if any(s.num_tokens > 1 for s in step.seqs):
            times.append(time.perf_counter() - t0)
        return out

    engine.runner.launch = timed  # type: ignore[method-assign]
    params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
    g = torch.Generator().manual_seed(prompt)
    for i in range(repeats + 3):
        ids = torch.randint(3, 32000, (prompt,), generator=g).tolist()
        rid = f"mixed-{i}"
        engine.add_request(GenerateRequest(rid, tuple(ids), params))
        done = len(times)
        while len(times) == done:
            engine.step()
        engine.abort(rid)
    engine.runner.launch = launch  # type: ignore[method-assign]
    if mixed is not None:
        mixed.run = run  # type: ignore[method-assign]
    clear(engine)
    return {
        "decodes": decodes,
        "prompt": prompt,
        "mixed_graphs": mixed is not None,
        "graph_replays": replayed[0],
        "step_ms": 1000 * median(times[3:]),  # the first ones warm up
    }


def mixed_table(model_dir: Path) -> None:
    """A mixed step (decodes plus one new prompt) eager vs replayed as a mixed graph."""
    rows = []
    for mixed in (False, True):
        engine = engine_for(model_dir, graphs=True, mixed=mixed)
        for decodes, prompt in ((31, 128), (63, 256), (1, 512)):
            rows.append(mixed_row(engine, decodes, prompt))
        del engine
        torch.cuda.empty_cache()
    print("\n== mixed step: eager vs mixed CUDA graph (ms, launch to device done) ==")
    print_table(rows)


def host_profile(engine: LLMEngine, batch: int, context: int, top: int = 22) -> None:
    """Python functions by own time over 20 graph-replayed decode steps."""
    fill(engine, batch, context)
    engine.step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        engine.step()
    prof.disable()
    clear(engine)
    print(f"\n== host functions, batch {batch}, context {context} (20 steps) ==")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def phase_table(engine: LLMEngine, batch: int, context: int) -> None:
    """Wall time of each phase of graph-replayed decode steps (device synchronized around
    each), and the CUDA runtime calls the host waits in."""
    fill(engine, batch, context)
    engine.step()
    graphs = engine.runner.graphs
    assert graphs is not None
    spent: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            torch.cuda.synchronize()
            spent[name].append(1000 * (time.perf_counter() - t0))
            return out

        return wrapper

    # The timers synchronize, so steps do not overlap here (async scheduling is off in effect).
    originals = (engine.scheduler.schedule, engine.runner.launch, graphs.run)
    bucket = next(b for b in graphs.buckets if b >= batch)
    graph = graphs.graphs[bucket, 1]
    engine.scheduler.schedule = timed("schedule", originals[0])  # type: ignore[method-assign]
    engine.runner.launch = timed("launch", originals[1])  # type: ignore[method-assign]
    graphs.run = timed("graphs.run", originals[2])  # type: ignore[method-assign]
    graph.replay = timed("replay", graph.replay)  # type: ignore[method-assign]
    for _ in range(20):
        t0 = time.perf_counter()
        engine.step()
        spent["step"].append(1000 * (time.perf_counter() - t0))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            engine.step()
    engine.scheduler.schedule, engine.runner.launch, graphs.run = originals  # type: ignore[method-assign]
    del graph.replay
    clear(engine)
    print(f"\n== phases of a decode step, batch {batch}, context {context} (ms) ==")
    print_table([{"phase": k, "median_ms": median(v)} for k, v in spent.items()])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def kernel_table(
    engine: LLMEngine, batch: int, context: int, top: int = 14, adapters: int = 0
) -> None:
    """Eager steps under the profiler: kernels ranked by total CUDA time."""
    fill(engine, batch, context, adapters)
    graphs, engine.runner.graphs = engine.runner.graphs, None
    engine.step()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            engine.step()
        torch.cuda.synchronize()
    engine.runner.graphs = graphs
    clear(engine)
    print(f"\n== eager decode kernels, batch {batch}, context {context} (3 steps) ==")
    print(
        prof.key_averages().table(
            sort_by="cuda_time_total", row_limit=top, max_name_column_width=60
        )
    )


def serving_split(engine: LLMEngine, work: list[tuple[list[int], int]], adapters: int = 0) -> None:
    """Time of mixed (prefill) and pure-decode steps over the serving workload (each
    launch waited for, so steps do not overlap)."""
    launch = engine.runner.launch
    spent: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, list[int]] = defaultdict(list)

    def timed(step: SchedulerOutput) -> PendingOutput:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = launch(step)
        torch.cuda.synchronize()
        kind = "decode" if all(s.num_tokens == 1 for s in step.seqs) else "mixed"
        spent[kind].append(time.perf_counter() - t0)
        sizes[kind].append(len(step.seqs))
        return out

    engine.runner.launch = timed  # type: ignore[method-assign]
    for i, (prompt, out_len) in enumerate(work):
        params = SamplingParams(max_tokens=out_len, temperature=0, ignore_eos=True)
        adapter = f"a{i % adapters}" if adapters else None
        engine.add_request(GenerateRequest(f"s{i}", tuple(prompt), params, adapter=adapter))
    start = time.perf_counter()
    generated = 0
    while engine.has_unfinished():
        generated += sum(len(d.token_ids) for d in engine.step())
    total = time.perf_counter() - start
    engine.runner.launch = launch  # type: ignore[method-assign]
    rows = [
        {
            "kind": kind,
            "steps": len(times),
            "seconds": sum(times),
            "median_ms": 1000 * median(times),
            "mean_batch": sum(sizes[kind]) / len(sizes[kind]),
        }
        for kind, times in spent.items()
    ]
    rows.append(
        {
            "kind": "whole run",
            "steps": 0,
            "seconds": total,
            "median_ms": 0.0,
            "mean_batch": generated / total,
        }
    )
    print(
        f"\n== serving {len(work)} requests, {adapters} adapters: {generated / total:.0f} tok/s =="
    )
    print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serving", type=int, default=256, help="requests in the serving run")
    parser.add_argument("--lora", action="store_true", help="64 rank-16 adapters vs base")
    parser.add_argument(
        "--mixed", action="store_true", help="only the mixed step, eager vs mixed graph"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(Path(tmp) / "llama-1b")
        if args.lora:
            lora_profile(model_dir)
            return
        if args.mixed:
            mixed_table(model_dir)
            return
        engine = engine_for(model_dir, graphs=True)
        rows = [
            split_row(engine, b, c)
            for b, c in ((1, 128), (1, 1024), (64, 128), (64, 640), (256, 640))
        ]
        print("\n== step = host + graph replay (ms) ==")
        print_table(rows)
        phase_table(engine, 256, 640)
        phase_table(engine, 64, 640)
        host_profile(engine, 256, 640)
        for batch, context in ((1, 128), (64, 128), (256, 640)):
            kernel_table(engine, batch, context)
        serving_split(engine, serving_workload(args.serving))
        del engine
        torch.cuda.empty_cache()
        mixed_table(model_dir)


def lora_profile(model_dir: Path) -> None:
    """gpu_suite's adapter workload: where mixed-adapter steps spend their time."""
    engine = adapter_engine(model_dir)
    short = [(p[:256], 128) for p, _ in serving_workload(128)]
    serving_split(engine, short)
    serving_split(engine, short, adapters=64)
    kernel_table(engine, 128, 300, adapters=64)


if __name__ == "__main__":
    main()
