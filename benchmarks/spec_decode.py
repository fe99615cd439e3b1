"""Speculative decoding on the bundled target/draft pair: tokens/s with and without it at
batch 1, 4 and 32, measured acceptance, and the analytic speedup beside the measured one.

Prompts are windows of the held-out Python files in models/heldout (never trained on).
Greedy decoding, so outputs with and without speculation are identical (checked).

    .venv/bin/python -m benchmarks.spec_decode [--device cuda] [--batches 1 4 32]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from benchmarks.common import hardware, median, print_table, write_json
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ScheduledSeq
from workers.spec.config import SpecConfig
from workers.spec.draft_model import DraftModelProposer
from workers.spec.policy import expected_speedup

MODELS = Path(__file__).resolve().parent.parent / "models"
TARGET, DRAFT = MODELS / "tandem-code-8m", MODELS / "tandem-code-draft"


def heldout_prompts(count: int, length: int) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(TARGET)
    with gzip.open(MODELS / "heldout" / "python.json.gz") as f:
        docs = json.load(f)["documents"]
    ids = [tokenizer(d["text"])["input_ids"] for d in docs]
    prompts = []
    for i in range(count):  # round-robin over files, a new window each pass
        doc = ids[i % len(ids)]
        start = (i // len(ids)) * length * 3 % max(len(doc) - length, 1)
        prompts.append(doc[start : start + length])
    return prompts


def make_engine(device: str, k: int) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(TARGET),
            device=device,
            # No prefix caching: the runs share prompts, and hits would favour the later run.
            cache=CacheConfig(block_size=16, num_blocks=2048, enable_prefix_caching=False),
            scheduler=SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=4096),
            spec=SpecConfig(
                draft_model=str(DRAFT),
                num_speculative_tokens=k,
                max_batch_size=64,
                draft_num_blocks=2048,
                min_acceptance=0.0,
            ),
        )
    )


def run(
    engine: LLMEngine, prompts: list[list[int]], mode: SpeculationMode, new_tokens: int
) -> tuple[dict[str, float], list[list[int]]]:
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    assert engine.speculator is not None  # the engine is made with spec
    stats = engine.speculator.policy.stats
    drafted0, accepted0, rounds0 = (
        stats.num_drafted_tokens,
        stats.num_accepted_tokens,
        stats.num_drafts,
    )
    ids = [f"{mode}-{time.monotonic_ns()}-{i}" for i in range(len(prompts))]
    for rid, p in zip(ids, prompts, strict=True):
        engine.add_request(GenerateRequest(rid, tuple(p), params, speculation=mode))
    outputs: dict[str, list[int]] = {rid: [] for rid in ids}
    start = time.perf_counter()
    while engine.has_unfinished():
        for d in engine.step():
            outputs[d.request_id].extend(d.token_ids)
    elapsed = time.perf_counter() - start
    generated = sum(len(o) for o in outputs.values())
    drafted = stats.num_drafted_tokens - drafted0
    return {
        "tokens_per_s": generated / elapsed,
        "acceptance": (stats.num_accepted_tokens - accepted0) / max(drafted, 1),
        "mean_k": drafted / max(stats.num_drafts - rounds0, 1),
    }, [outputs[rid] for rid in ids]


def draft_cost_ratio(engine: LLMEngine, batch: int, repeats: int = 20) -> float:
    """c: one batched decode step of the draft over one of the target (same batch size)."""
    assert engine.speculator is not None  # the engine is made with spec
    draft = engine.speculator.proposers[SpeculationMode.COLOCATED]
    assert isinstance(draft, DraftModelProposer)
    times = {}
    for name, runner, kv in (
        ("target", engine.runner, engine.kv),
        ("draft", draft.runner, draft.kv),
    ):
        seqs = []
        for i in range(batch):
            seq_id = 10_000_000 + i
            kv.allocate_slots(seq_id, 0, 65)
            seqs.append(
                ScheduledSeq(
                    seq_id=seq_id,
                    request_id=str(i),
                    token_ids=(5,),
                    start_pos=64,
                    block_table=tuple(kv.block_tables[seq_id]),
                    sample=True,
                    sampling=SamplingParams(temperature=0),
                )
            )
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner.forward_logits(tuple(seqs))
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - t0)
        times[name] = median(samples)
        for i in range(batch):
            kv.free(10_000_000 + i)
        runner.forget(10_000_000 + i for i in range(batch))
    return times["draft"] / times["target"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=(1, 4, 32))
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=96)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--name", default="spec_decode_cpu.json")
    args = parser.parse_args()
    engine = make_engine(args.device, args.k)
    rows = []
    for batch in args.batches:
        prompts = heldout_prompts(batch, args.prompt_len)
        run(engine, prompts[:1], SpeculationMode.COLOCATED, 8)  # warm-up
        plain, plain_out = run(engine, prompts, SpeculationMode.NONE, args.new_tokens)
        spec, spec_out = run(engine, prompts, SpeculationMode.COLOCATED, args.new_tokens)
        assert spec_out == plain_out, "speculation changed greedy output"
        c = draft_cost_ratio(engine, batch)
        k = round(spec["mean_k"])
        rows.append(
            {
                "batch": batch,
                "plain_tok_s": plain["tokens_per_s"],
                "spec_tok_s": spec["tokens_per_s"],
                "speedup": spec["tokens_per_s"] / plain["tokens_per_s"],
                "acceptance": spec["acceptance"],
                "mean_k": spec["mean_k"],
                "c": c,
                "analytic": expected_speedup(spec["acceptance"], k, c),
            }
        )
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "device": args.device,
            "k_max": args.k,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "results": rows,
        },
    )
    print(
        f"\n{hardware()}; bundled target {TARGET.name} with draft {DRAFT.name}, greedy, "
        f"k_max={args.k} (adaptive), {args.new_tokens} new tokens per request"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
