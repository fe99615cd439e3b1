"""Prompt-lookup (n-gram) speculation on the real model, SmolLM2-135M-Instruct, on this CPU:
acceptance and tokens/s with and without it, at 1 and 8 streams, on two prompt sets:

- `chat`: the 20 everyday chat prompts of models/smollm2/prompts.py (little to copy);
- `grounded`: "answer from this passage" turns over Python Language Reference passages
  (pydoc_data.topics), where answers quote their prompt.

Every width runs the same 8 prompts of a set, in waves of `streams` at once, so widths compare
like for like. Three modes: plain; n-gram as served (the engine's ThroughputGate drafts only
in batch sizes where drafting has measured faster); n-gram always (the gate replaced by one
that always drafts: the proposer's own effect). Greedy, so the outputs of all three must be
identical (checked); each request runs to EOS or `--new-tokens`. Prints a table; writes
benchmarks/results/<name>.json.

    .venv/bin/python -m benchmarks.real_model_spec [--k 4] [--streams 1 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from transformers import AutoTokenizer

from benchmarks.common import hardware, median, print_table, write_json
from models.smollm2.paths import MODEL_DIR
from models.smollm2.prompts import CHAT_PROMPTS, chat_prompt_ids
from models.smollm2.quant_lab import reference_text
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.throughput_gate import AlwaysDraft

GROUNDED_QUESTIONS = (
    "What does this passage say the statement is used for?",
    "Summarize this passage in two sentences.",
    "Quote the first sentence of this passage.",
    "Which keywords does this passage mention?",
)


def prompt_sets(count: int) -> dict[str, list[str]]:
    paragraphs = [p for p in reference_text().split("\n\n") if 300 < len(p) < 700]
    grounded = [
        f"{paragraphs[i * 7 % len(paragraphs)]}\n\n{GROUNDED_QUESTIONS[i % 4]}"
        for i in range(count)
    ]
    return {"chat": list(CHAT_PROMPTS[:count]), "grounded": grounded}


def make_engine(k: int) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(MODEL_DIR),
            dtype="float32",
            # no prefix caching: runs repeat the prompts, and hits would favour later runs
            cache=CacheConfig(block_size=16, num_blocks=1024, enable_prefix_caching=False),
            scheduler=SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=1024),
            spec=SpecConfig(num_speculative_tokens=k, min_acceptance=0.0, max_batch_size=64),
        )
    )


def run(
    engine: LLMEngine,
    prompts: list[list[int]],
    mode: SpeculationMode,
    new_tokens: int,
    streams: int,
) -> tuple[dict[str, float], list[list[int]]]:
    assert engine.speculator is not None  # the engine is made with spec
    stats = engine.speculator.policy.stats
    drafted0, accepted0 = stats.num_drafted_tokens, stats.num_accepted_tokens
    params = SamplingParams(max_tokens=new_tokens, temperature=0)
    ids = [f"{mode}-{time.monotonic_ns()}-{i}" for i in range(len(prompts))]
    outputs: dict[str, list[int]] = {rid: [] for rid in ids}
    steps = 0
    start = time.perf_counter()
    for wave in range(0, len(prompts), streams):
        for rid, p in zip(ids[wave : wave + streams], prompts[wave : wave + streams], strict=True):
            engine.add_request(GenerateRequest(rid, tuple(p), params, speculation=mode))
        while engine.has_unfinished():
            steps += 1
            for d in engine.step():
                outputs[d.request_id].extend(d.token_ids)
    elapsed = time.perf_counter() - start
    generated = sum(len(o) for o in outputs.values())
    drafted = stats.num_drafted_tokens - drafted0
    return {
        "tokens_per_s": generated / elapsed,
        "acceptance": (stats.num_accepted_tokens - accepted0) / max(drafted, 1),
        "drafted": drafted,
        "generated": generated,
        "steps": steps,
    }, [outputs[rid] for rid in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--streams", type=int, nargs="+", default=(1, 8))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per set")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--name", default="real_model_spec_cpu.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    served, always = make_engine(args.k), make_engine(args.k)
    assert always.speculator is not None  # the engine is made with spec
    always.speculator.gate = AlwaysDraft()
    rows = []
    for set_name, messages in prompt_sets(args.prompts).items():
        prompts = [chat_prompt_ids(tokenizer, m) for m in messages]
        for streams in args.streams:
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "served": [], "always": []}
            for _ in range(args.repeats):  # interleaved: machine load hits all alike
                plain, want = run(served, prompts, SpeculationMode.NONE, args.new_tokens, streams)
                gated, out = run(served, prompts, SpeculationMode.NGRAM, args.new_tokens, streams)
                forced, out2 = run(always, prompts, SpeculationMode.NGRAM, args.new_tokens, streams)
                assert out == out2 == want, "greedy speculation changed the output"
                for key, result in (("plain", plain), ("served", gated), ("always", forced)):
                    runs[key].append(result)
            tps = {k: median([r["tokens_per_s"] for r in v]) for k, v in runs.items()}
            rows.append(
                {
                    "prompts": set_name,
                    "streams": streams,
                    "plain_tok_s": tps["plain"],
                    "served_tok_s": tps["served"],
                    "served_drafted": runs["served"][0]["drafted"],
                    "always_tok_s": tps["always"],
                    "always_acceptance": median([r["acceptance"] for r in runs["always"]]),
                    "always_speedup": tps["always"] / tps["plain"],
                    "generated": runs["plain"][0]["generated"],
                    "runs": runs,
                }
            )
            print({k: v for k, v in rows[-1].items() if k != "runs"}, flush=True)
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "load_average_at_end": os.getloadavg(),  # a shared machine: other users' load
            "model": MODEL_DIR.name,
            "k": args.k,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "results": rows,
        },
    )
    print(f"\n{hardware()}; {MODEL_DIR.name}, fp32, n-gram k={args.k}, greedy")
    print_table([{k: v for k, v in r.items() if k != "runs"} for r in rows])


if __name__ == "__main__":
    main()
