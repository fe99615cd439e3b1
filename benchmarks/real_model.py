"""The seed's first lab on the real model: Tandem's engine against transformers `generate` on
SmolLM2-135M-Instruct (converted by `python -m models.smollm2.convert`), on this CPU.

One run measures both, interleaved, at 1 and at 8 concurrent streams: output tokens/s and
time to first token (TTFT). Prompts are chat turns (models/smollm2/prompts.py) through the
chat template; every stream makes `--new-tokens` tokens (EOS ignored), greedy, fp32.
transformers gets one static left-padded batch (TTFT: a generate of one new token);
Tandem gets the requests at once and batches them continuously (TTFT: when a request's first
token comes out of `step()`). Prints a table; writes benchmarks/results/<name>.json.

    .venv/bin/python -m benchmarks.real_model [--streams 1 8] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.common import hardware, median, print_table, write_json
from models.smollm2.paths import MODEL_DIR
from models.smollm2.prompts import CHAT_PROMPTS, chat_prompt_ids
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams


def chat_prompts(model_dir: Path, count: int) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return [chat_prompt_ids(tokenizer, m) for m in CHAT_PROMPTS[:count]]


def run_transformers(model, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    pad = model.config.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def generate(count: int) -> tuple[float, int]:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=count,
                min_new_tokens=count,
                do_sample=False,
                pad_token_id=pad,
            )
        return time.perf_counter() - start, (out.shape[1] - width) * len(prompts)

    ttft, _ = generate(1)
    elapsed, generated = generate(new_tokens)
    return {"tokens_per_s": generated / elapsed, "ttft_ms": 1000 * ttft, "seconds": elapsed}


def make_tandem(model_dir: Path) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(model_dir),
            dtype="float32",
            # no prefix caching: repeats reuse the prompts, and hits would favour later runs
            cache=CacheConfig(block_size=16, num_blocks=512, enable_prefix_caching=False),
            scheduler=SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=1024),
        )
    )


def run_tandem(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    tag = time.monotonic_ns()
    start = time.perf_counter()
    for i, p in enumerate(prompts):
        engine.add_request(GenerateRequest(f"{tag}-{i}", tuple(p), params))
    first: dict[str, float] = {}
    generated = 0
    while engine.has_unfinished():
        for delta in engine.step():
            if delta.token_ids:
                first.setdefault(delta.request_id, time.perf_counter() - start)
            generated += len(delta.token_ids)
    elapsed = time.perf_counter() - start
    return {
        "tokens_per_s": generated / elapsed,
        "ttft_ms": 1000 * median(list(first.values())),
        "seconds": elapsed,
    }


def spread(runs: list[dict[str, float]], key: str) -> tuple[float, float, float]:
    values = sorted(r[key] for r in runs)
    return values[0], median(values), values[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--streams", type=int, nargs="+", default=(1, 8))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine and width")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--name", default="real_model_cpu.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, local_files_only=True
    ).eval()
    tandem = make_tandem(args.model)
    run_tandem(tandem, chat_prompts(args.model, 1), 4)  # warm-up: first-call allocations
    rows = []
    for streams in args.streams:
        prompts = chat_prompts(args.model, streams)
        runs: dict[str, list[dict[str, float]]] = {"transformers generate": [], "tandem": []}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            runs["transformers generate"].append(run_transformers(hf, prompts, args.new_tokens))
            runs["tandem"].append(run_tandem(tandem, prompts, args.new_tokens))
        for engine, engine_runs in runs.items():
            low, mid, high = spread(engine_runs, "tokens_per_s")
            rows.append(
                {
                    "engine": engine,
                    "streams": streams,
                    "tokens_per_s": mid,
                    "tok_s_min": low,
                    "tok_s_max": high,
                    "ttft_ms": spread(engine_runs, "ttft_ms")[1],
                    "runs": engine_runs,
                }
            )
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "load_average_at_end": os.getloadavg(),  # a shared machine: other users' load
            "model": args.model.name,
            "dtype": "float32",
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "results": rows,
        },
    )
    print(
        f"\n{hardware()}; {args.model.name}, fp32, chat prompts, {args.new_tokens} new tokens "
        f"per stream, {args.repeats} runs each (median, min-max)"
    )
    print_table([{k: v for k, v in r.items() if k != "runs"} for r in rows])


if __name__ == "__main__":
    main()
