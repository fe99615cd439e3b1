"""The engine's host cost per decode step, measurable without a GPU: a micro Llama (one
layer, hidden 64, vocab 512) on CPU makes the model's own work a small share of the step, so
the step time is mostly the engine's Python (scheduling, the input batch, sampling, deltas)
- the time that on the GPU must hide behind the device's step. Also the same steps driven
through the engine-core process's message path (serializing each step's deltas), and the top
functions by cumulative time under cProfile.

    .venv/bin/python -m benchmarks.host_step [--batches 1,64,256] [--steps 50] [--repeats 3]
        [--arrivals 64]

`--arrivals T`: also steps in a steady state of spread arrivals, as clients over HTTP make
them: requests of T new tokens whose ends are spread over T steps, each replaced by a new
request (a 96-token prompt) as soon as it finishes, so about batch / T prompts join every
step; set beside the pure decode steps of the same batch in the same run.
Prints tables, writes JSON (benchmarks/results/host_step_cpu.json).
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks.common import hardware, median, print_table, write_json
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.core_messages import Step
from workers.delta_streams import delivered
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams

MICRO = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 512,
    "max_position_embeddings": 4096,
}
PROMPT_TOKENS = 32
ARRIVAL_PROMPT_TOKENS = 96


def save_micro_model(path: Path) -> Path:
    config = AutoConfig.for_model("llama", bos_token_id=1, eos_token_id=2, **MICRO)
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def micro_engine(model_dir: Path, batch: int) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(model_dir),
            device="cpu",
            dtype="float32",
            cache=CacheConfig(block_size=16, num_blocks=batch * 16 + 64),
            scheduler=SchedulerConfig(max_num_seqs=batch, max_num_batched_tokens=8192),
        )
    )


def fill(engine: LLMEngine, batch: int, params: SamplingParams) -> None:
    """`batch` requests, prefilled, so every later step is a pure decode step."""
    g = torch.Generator().manual_seed(batch)
    for i in range(batch):
        prompt = torch.randint(3, MICRO["vocab_size"], (PROMPT_TOKENS,), generator=g).tolist()
        engine.add_request(GenerateRequest(f"r{i}", tuple(prompt), params))
    while engine.scheduler.num_waiting:
        engine.step()
    engine.step()


class Arrivals:
    """Keeps `batch` requests of `new_tokens` tokens running, their ends spread over
    new_tokens steps: each one that finishes is replaced by a new one at once."""

    def __init__(self, engine: LLMEngine, batch: int, new_tokens: int) -> None:
        self.engine = engine
        self.new_tokens = new_tokens
        self.generator = torch.Generator().manual_seed(batch)
        self.count = 0
        for i in range(batch):  # the first wave ends spread: 1..new_tokens tokens
            self.add(1 + i * new_tokens // batch)

    def add(self, max_tokens: int) -> None:
        prompt = torch.randint(
            3, MICRO["vocab_size"], (ARRIVAL_PROMPT_TOKENS,), generator=self.generator
        )
        params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
        self.engine.add_request(GenerateRequest(f"a{self.count}", tuple(prompt.tolist()), params))
        self.count += 1

    def replace(self, deltas: list[TokenDelta]) -> None:
        for _ in range(sum(d.finished for d in deltas)):
            self.add(self.new_tokens)


def timed_steps(
    engine: LLMEngine,
    clock: ModelClock,
    steps: int,
    send: bool,
    arrivals: Arrivals | None = None,
) -> tuple[float, float]:
    """Median seconds per step, and of it outside the model; `send`: also pickle each step's
    message as the engine core does; `arrivals`: replace each finished request (adding them
    counts as host time: the engine core adds arrivals between its steps)."""
    times, host = [], []
    for _ in range(steps):
        clock.seconds = 0.0
        start = time.perf_counter()
        deltas = engine.step()
        if arrivals is not None:
            arrivals.replace(deltas)
        if send:
            items: list[tuple[str, TokenDelta | BaseException]] = [
                (d.request_id, delivered(d)) for d in deltas
            ]
            pickle.dumps(Step(items, engine.stats()), protocol=pickle.HIGHEST_PROTOCOL)
        times.append(time.perf_counter() - start)
        host.append(times[-1] - clock.seconds)
    return median(times), median(host)


class ModelClock:
    """Accumulates the seconds spent in the model's forward and logits (what a GPU runs)."""

    def __init__(self, engine: LLMEngine) -> None:
        self.seconds = 0.0
        model = engine.runner.model
        for name in ("forward", "compute_logits"):
            setattr(model, name, self._timed(getattr(model, name)))

    def _timed(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def profile_top(
    engine: LLMEngine, steps: int, top: int = 15, arrivals: Arrivals | None = None
) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        deltas = engine.step()
        if arrivals is not None:
            arrivals.replace(deltas)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}:{line} {name}"
        rows.append({"function": where, "calls": calls, "tottime": tottime, "cumtime": cumtime})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:top]


def arrival_row(
    model_dir: Path, batch: int, new_tokens: int, args: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The steady state of spread arrivals at this batch (a fresh engine), and its profile."""
    engine = micro_engine(model_dir, batch)
    clock = ModelClock(engine)
    arrivals = Arrivals(engine, batch, new_tokens)
    # Settle: the first wave prefilled and replaced (one full turnover).
    timed_steps(engine, clock, new_tokens + 5, False, arrivals)
    runs = [timed_steps(engine, clock, args.steps, False, arrivals) for _ in range(args.repeats)]
    sent = [timed_steps(engine, clock, args.steps, True, arrivals) for _ in range(args.repeats)]
    joining = f"{batch / new_tokens:.1f} per step ({new_tokens}-token requests)"
    row = timing_row(batch, joining, runs, sent)
    return row, profile_top(engine, args.steps, arrivals=arrivals)


def timing_row(
    batch: int,
    arrivals: str,
    plain: list[tuple[float, float]],
    sent: list[tuple[float, float]],
) -> dict[str, Any]:
    """Medians and ranges (ms) of repeated timed_steps runs without and with messages."""
    step, host = [p[0] for p in plain], [p[1] for p in plain]
    message = [s[1] - h for s, h in zip(sent, host, strict=True)]
    return {
        "batch": batch,
        "arrivals": arrivals,
        "step_ms": median(step) * 1e3,
        "step_ms_spread": [min(step) * 1e3, max(step) * 1e3],
        "host_ms": median(host) * 1e3,
        "host_ms_spread": [min(host) * 1e3, max(host) * 1e3],
        "message_ms": median(message) * 1e3,
        "host_us_per_seq": median(host) * 1e6 / batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampled", action="store_true", help="temperature 0.8, top-p 0.9")
    parser.add_argument("--arrivals", type=int, default=0, help="new tokens per request")
    parser.add_argument("--out", default="host_step_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = SamplingParams(max_tokens=100_000, temperature=0, ignore_eos=True)
    if args.sampled:
        params = SamplingParams(max_tokens=100_000, temperature=0.8, top_p=0.9, ignore_eos=True)
    batches = [int(b) for b in args.batches.split(",")]
    rows: list[dict[str, Any]] = []
    profiles: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_micro_model(Path(tmp) / "micro")
        for batch in batches:
            engine = micro_engine(model_dir, batch)
            clock = ModelClock(engine)
            fill(engine, batch, params)
            timed_steps(engine, clock, 5, send=False)  # warm-up
            plain = [timed_steps(engine, clock, args.steps, False) for _ in range(args.repeats)]
            sent = [timed_steps(engine, clock, args.steps, True) for _ in range(args.repeats)]
            profiles[str(batch)] = profile_top(engine, args.steps)
            rows.append(timing_row(batch, "none", plain, sent))
            if args.arrivals:
                row, profiles[f"{batch}, arrivals"] = arrival_row(
                    model_dir, batch, args.arrivals, args
                )
                rows.append(row)
    print_table(
        [
            {
                "batch": r["batch"],
                "arrivals": r["arrivals"],
                "step ms": f"{r['step_ms']:.2f}",
                "spread": f"{r['step_ms_spread'][0]:.2f}-{r['step_ms_spread'][1]:.2f}",
                "host ms": f"{r['host_ms']:.2f}",
                "host spread": f"{r['host_ms_spread'][0]:.2f}-{r['host_ms_spread'][1]:.2f}",
                "+ message ms": f"{r['message_ms']:.2f}",
                "host us / seq": f"{r['host_us_per_seq']:.1f}",
            }
            for r in rows
        ]
    )
    last = max(batches)
    for key in (str(last), f"{last}, arrivals"):
        if key not in profiles:
            continue
        print(f"\ntop functions by own time, batch {key}, {args.steps} steps:")
        print_table(
            [
                {
                    "function": p["function"],
                    "calls": p["calls"],
                    "own s": f"{p['tottime']:.3f}",
                    "cumulative s": f"{p['cumtime']:.3f}",
                }
                for p in profiles[key]
            ]
        )
    write_json(args.out, {"hardware": hardware(), "rows": rows, "profiles": profiles})


if __name__ == "__main__":
    main()
