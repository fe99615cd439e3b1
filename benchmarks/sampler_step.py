"""The sampling part of a step on CPU, per row against batched, side by side: host logits of
a step in, each sequence's tokens (with log-probabilities) out.

Two steps, at each batch size: `penalties` (every sequence with repetition, presence and
frequency penalties over a prompt and outputs, temperature, top-k or top-p, some with
logprobs; one row each) and `drafted` (the same settings, every sequence verifying k drafts,
half with the draft's distributions, half deterministic; k + 1 rows each). Three ways:

- per_row: each sequence alone through the reference (processed_logits, sampling_probs, then
  draw or verify_drafts), as drafted rows were sampled before;
- prior: penalties row by row, then one batched sample (one-token rows before; penalties
  step only);
- batched: workers/step_sampling.sample_seqs, the runner's path now.

All three share the same primitives (top-p's sort_descending among them), so the ratios are
those of batching alone. Every sequence is seeded, as the runner's seeded requests are.

    .venv/bin/python -m benchmarks.sampler_step [--batches 64,256] [--vocabs 512,8192] [--k 4]
        [--repeats 7] [--threads 1]

Prints a table of medians (ms per step) and ratios, writes JSON
(benchmarks/results/sampler_step_cpu.json).
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from benchmarks.common import hardware, median, print_table, write_json
from workers.batch_sampler import sample
from workers.gc_freeze import freeze_long_lived_objects
from workers.protocol import TokenLogprob
from workers.sampler import draw, processed_logits, sampling_probs, top_logprobs
from workers.sampling_batch import prepare, sampling_row
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ScheduledSeq
from workers.spec.verify import verify_drafts
from workers.step_sampling import PendingSeq, sample_seqs

STOPS = frozenset({2})
SETTINGS = [
    SamplingParams(temperature=0.8, top_k=50, repetition_penalty=1.2, presence_penalty=0.5),
    SamplingParams(temperature=1.0, top_p=0.9, frequency_penalty=0.4, logprobs=2),
    SamplingParams(temperature=0.7, top_k=20, top_p=0.95, repetition_penalty=1.1),
    SamplingParams(temperature=1.1, top_p=0.8, presence_penalty=0.3, frequency_penalty=0.2),
]


def make_step(
    batch: int, vocab: int, k: int, seed: int = 0
) -> tuple[list[PendingSeq], torch.Tensor]:
    """`batch` sequences (k drafts each) and the step's logits [batch * (k + 1), vocab]."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch * (k + 1), vocab, generator=g) * 3
    seqs = []
    for i in range(batch):
        rows = logits[i * (k + 1) : (i + 1) * (k + 1)]
        drafts = tuple(int(rows[j].topk(4).indices[rng.randrange(4)]) for j in range(k))
        spec_probs = torch.softmax(rows[:k] * 0.8, -1) if k and i % 2 else None
        outputs = tuple(rng.randrange(vocab) for _ in range(64))
        s = ScheduledSeq(
            seq_id=i,
            request_id=f"r{i}",
            token_ids=(1,),
            start_pos=0,
            block_table=(),
            sample=True,
            sampling=replace(SETTINGS[i % len(SETTINGS)], seed=i),
            generator=torch.Generator().manual_seed(i),
            prompt_token_ids=tuple(rng.randrange(vocab) for _ in range(128)),
            output_token_ids=outputs,
            num_output_tokens=len(outputs),
            spec_token_ids=drafts,
            spec_probs=spec_probs,
        )
        seqs.append(PendingSeq(s, i * (k + 1), STOPS))
    return seqs, logits


def per_row(seqs: list[PendingSeq], logits: torch.Tensor, logprobs: torch.Tensor) -> None:
    """Each sequence alone through the reference functions."""
    for p in seqs:
        s = p.seq
        params = s.sampling
        drafts = s.spec_token_ids
        rows = range(p.row, p.row + len(drafts) + 1)
        probs = torch.stack(
            [
                sampling_probs(
                    processed_logits(
                        logits[r],
                        params,
                        s.prompt_token_ids,
                        s.output_token_ids + drafts[:j],
                        p.stop_ids,
                        s.num_output_tokens + j,
                    ),
                    params,
                )
                for j, r in enumerate(rows)
            ]
        )
        if drafts:
            tokens = verify_drafts(probs, list(drafts), s.spec_probs, params, s.generator)
        else:
            tokens = [draw(probs[0], params, s.generator)]
        top = params.logprobs or 0
        _ = [
            TokenLogprob(t, float(logprobs[r, t]), top_logprobs(logprobs[r], top))
            for t, r in zip(tokens, rows, strict=False)
        ]


def prior(seqs: list[PendingSeq], logits: torch.Tensor, logprobs: torch.Tensor) -> None:
    """One-token rows as sampled before: penalties row by row, then one batched sample."""
    work = logits.clone()
    for p in seqs:
        s = p.seq
        work[p.row] = processed_logits(
            logits[p.row],
            s.sampling,
            s.prompt_token_ids,
            s.output_token_ids,
            p.stop_ids,
            s.num_output_tokens,
        )
    rows = [sampling_row(p.seq.sampling, p.seq.generator) for p in seqs]
    out = sample(work, prepare(rows, logits.shape[-1], logits.device), logprobs)
    tokens, chosen = out.tokens.tolist(), out.logprobs.tolist()
    ids = out.top_ids.tolist() if out.top_ids is not None else None
    values = out.top_logprobs.tolist() if out.top_logprobs is not None else None
    for i, p in enumerate(seqs):
        count = p.seq.sampling.logprobs or 0
        top: tuple[tuple[int, float], ...] = ()
        if count and ids is not None and values is not None:
            top = tuple(zip(ids[i][:count], values[i][:count], strict=True))
        _ = TokenLogprob(tokens[i], chosen[i], top)


def batched(seqs: list[PendingSeq], logits: torch.Tensor, logprobs: torch.Tensor) -> None:
    sample_seqs(seqs, logits, logprobs, None)


Way = Callable[[list[PendingSeq], torch.Tensor, torch.Tensor], None]


def time_ms(
    ways: dict[str, Way], seqs: list[PendingSeq], logits: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Each way's median ms, the ways taking turns (a busy moment of the host falls on
    them alike), with what lives across the calls frozen as the engine freezes it."""
    logprobs = logits.log_softmax(-1)
    for way in ways.values():
        way(seqs, logits, logprobs)  # warm up
    freeze_long_lived_objects()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            gc.collect()
            start = time.perf_counter()
            way(seqs, logits, logprobs)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--vocabs", default="512,8192")
    parser.add_argument("--k", type=int, default=4, help="drafts per sequence (drafted step)")
    parser.add_argument("--repeats", type=int, default=7)
    # One thread by default: on a small shared host, ops split over threads wait for a
    # busy core (an isfinite over [320, 2048] takes 10x longer on 2 threads than on 1).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="sampler_step_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []
    grid = [
        (vocab, batch, step, k)
        for vocab in [int(v) for v in args.vocabs.split(",")]
        for batch in [int(b) for b in args.batches.split(",")]
        for step, k in (("penalties", 0), ("drafted", args.k))
    ]
    for vocab, batch, step, k in grid:
        seqs, logits = make_step(batch, vocab, k)
        ways: dict[str, Way] = {"per_row": per_row, "prior": prior, "batched": batched}
        if k:
            del ways["prior"]  # one-token rows only
        ms = time_ms(ways, seqs, logits, args.repeats)
        row: dict[str, Any] = {"vocab": vocab, "step": step, "batch": batch}
        row["rows"] = logits.shape[0]
        row |= {f"{name}_ms": ms.get(name) for name in ("per_row", "prior", "batched")}
        row["per_row/batched"] = ms["per_row"] / ms["batched"]
        row["prior/batched"] = ms["prior"] / ms["batched"] if "prior" in ms else None
        rows.append(row)
        print(row, flush=True)
    print(f"\nsampling part of a step, CPU ({hardware()}), ms medians of {args.repeats}")
    print_table([{c: "-" if v is None else v for c, v in r.items()} for r in rows])
    settings = {"k": args.k, "repeats": args.repeats, "threads": args.threads}
    path = write_json(args.out, {"hardware": hardware(), "settings": settings, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
