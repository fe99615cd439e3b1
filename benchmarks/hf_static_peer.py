"""The suite's peer: transformers `generate` with a static KV cache and the decode forward
compiled (torch.compile, mode="reduce-overhead", fullgraph=True), the fastest stock path a user
would try (benchmarks/hf_compile.py sets it up the way the installed version documents).

    python -m benchmarks.hf_static_peer [--device cuda|cpu] [--model-dir DIR | --shape 1b|8b|tiny]
        [--batches 1,64] [--compile auto|forward|none] [--serving-batches 32,128,256]

Decode step at each batch (prompts of 128 random tokens, no padding, greedy, EOS off), as
Tandem's suite measures its own: `generate` timed at two lengths, `short` and `short + steps`
new tokens, alternating over `repeats` rounds; the step is the difference of the medians over
`steps`, so prefill and per-call costs cancel and generate's per-step host work stays in. The
first call (compile, CUDA-graph recording) and the other warm-up calls are timed and reported
apart. Optionally end-to-end `generate` tok/s at the suite's serving shape (left-padded
prompts 128-1024 from benchmarks.gpu_suite.serving_workload, 128 new tokens), after one
warm-up call at the same shape. Writes benchmarks/results/hf_static_peer_<device>.json, or
--out PATH (the suite reads that).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM

from benchmarks import hf_compile
from benchmarks.common import hardware, median, print_table, save_random_llama, write_json
from benchmarks.hf_compile import CompiledPath

TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)


@dataclasses.dataclass(frozen=True)
class Timing:
    prompt_len: int = 128
    short: int = 8  # new tokens of the short call
    steps: int = 32  # decode steps the long call adds
    repeats: int = 5
    warmup: int = 2  # calls of each length after the first (compiling) one


def load_model(model_dir: Path, device: str, dtype: torch.dtype) -> Any:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if model.dtype != dtype:  # a version that took `dtype` for a config field
        model = model.to(dtype)  # type: ignore[arg-type]
    model = model.to(device).eval()  # type: ignore[arg-type]
    # Greedy to the length asked, as Tandem's runs ignore EOS (no min-length processor).
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None  # versions that rebuild the generation config from it
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_generate(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int, path: CompiledPath
) -> float:
    synchronize(ids.device)
    start = time.perf_counter()
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        pad_token_id=0,
        **path.kwargs,
    )
    synchronize(ids.device)
    elapsed = time.perf_counter() - start
    if tuple(out.shape) != (ids.shape[0], ids.shape[1] + new_tokens):
        raise RuntimeError(f"generate returned {tuple(out.shape)} for {new_tokens} new tokens")
    return elapsed


def random_prompts(batch: int, timing: Timing, vocab: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(batch)
    return torch.randint(3, vocab, (batch, timing.prompt_len), generator=g).to(device)


def decode_figures(model: Any, batch: int, timing: Timing, path: CompiledPath) -> dict[str, Any]:
    ids = random_prompts(batch, timing, model.config.vocab_size, model.device)
    mask = torch.ones_like(ids)
    long = timing.short + timing.steps
    # The long call first: the static cache is sized for it and later, shorter calls reuse
    # that size, so every call decodes through the same compiled shapes.
    first_s = timed_generate(model, ids, mask, long, path)
    start = time.perf_counter()
    for _ in range(timing.warmup):
        for n in (timing.short, long):
            timed_generate(model, ids, mask, n, path)
    warmup_s = time.perf_counter() - start
    shorts, longs = [], []
    for _ in range(timing.repeats):
        shorts.append(timed_generate(model, ids, mask, timing.short, path))
        longs.append(timed_generate(model, ids, mask, long, path))
    step_ms = 1000 * (median(longs) - median(shorts)) / timing.steps
    each = [1000 * (b - a) / timing.steps for a, b in zip(shorts, longs, strict=True)]
    # generate(n) = prefill (the first token) + n - 1 decode steps (+ per-call costs)
    first_token_ms = 1000 * median(shorts) - (timing.short - 1) * step_ms
    return {
        "batch": batch,
        "step_ms": step_ms,
        "step_ms_spread": [min(each), max(each)],
        "first_token_ms": first_token_ms,
        "generate_tok_s": batch * long / median(longs),
        "first_call_s": first_s,
        "warmup_s": warmup_s,
        "compiled": hf_compile.compiled_in_generate(model, path),
        "prompt_len": timing.prompt_len,
        "short": timing.short,
        "steps": timing.steps,
        "repeats": timing.repeats,
    }


def serving_figures(
    model: Any,
    work: list[tuple[list[int], int]],
    batch: int,
    new_tokens: int,
    path: CompiledPath,
    repeats: int = 2,
) -> dict[str, Any]:
    """One static left-padded batch of the suite's serving prompts, as run_hf runs it."""
    prompts = [p for p, _ in work[:batch]]
    width = max(len(p) for p in prompts)
    device = model.device
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    first_s = timed_generate(model, ids, mask, new_tokens, path)
    seconds = median([timed_generate(model, ids, mask, new_tokens, path) for _ in range(repeats)])
    return {
        "batch": len(prompts),
        "new_tokens": new_tokens,
        "tokens_per_s": len(prompts) * new_tokens / seconds,
        "seconds": seconds,
        "first_call_s": first_s,
    }


def measured(model: Any, how: str, measure: Callable[[CompiledPath], dict]) -> dict[str, Any]:
    """`measure(path)` on a freshly compiled model (each batch gets shapes of its own, as in a
    process of its own), under fullgraph=True; if compiling fails there (a graph break in this
    version's model), again with fullgraph=False, the error kept for the report."""
    path = hf_compile.set_up(model, how, fullgraph=True)
    error = ""
    try:
        row = measure(path)
    except Exception as exc:  # dynamo/inductor raise many types; the eager path re-raises
        if path.how == "none":
            raise
        error = repr(exc)[:2000]
        print(f"fullgraph compile failed, retrying with fullgraph=False: {error}")
        hf_compile.tear_down(model)
        path = hf_compile.set_up(model, how, fullgraph=False)
        row = measure(path)
    hf_compile.tear_down(model)
    return {**row, "path": path.describe(), "fullgraph": path.fullgraph, "error": error}


def parse_batches(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model-dir", type=Path, default=None, help="a saved HF checkpoint")
    parser.add_argument("--shape", choices=("tiny", "1b", "8b"), default=None)
    parser.add_argument("--batches", default="1,64", help="decode batches, comma-separated")
    parser.add_argument("--compile", choices=hf_compile.HOWS, default="auto", dest="how")
    parser.add_argument("--prompt-len", type=int, default=Timing.prompt_len)
    parser.add_argument("--short", type=int, default=Timing.short)
    parser.add_argument("--steps", type=int, default=Timing.steps)
    parser.add_argument("--repeats", type=int, default=Timing.repeats)
    parser.add_argument("--warmup", type=int, default=Timing.warmup)
    parser.add_argument("--serving-batches", default="", help="e.g. 32,128,256 (default: none)")
    parser.add_argument("--serving-requests", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="JSON here, not in results/")
    parser.add_argument("--name", default=None, help="results file name")
    return parser.parse_args(argv)


def make_model_dir(shape: str, root: Path) -> Path:
    if shape == "tiny":
        return save_random_llama(root / "llama-tiny", **TINY)
    from benchmarks.gpu_suite import SHAPES, save_model  # CUDA, bf16, the suite's shapes

    return save_model(root / f"llama-{shape}", SHAPES[shape])


def run(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_model(model_dir, args.device, dtype)
    timing = Timing(args.prompt_len, args.short, args.steps, args.repeats, args.warmup)
    decode = [
        measured(model, args.how, partial(decode_figures, model, b, timing))
        for b in parse_batches(args.batches)
    ]
    serving = []
    if batches := parse_batches(args.serving_batches):
        from benchmarks.gpu_suite import serving_workload

        vocab = model.config.vocab_size  # the workload's ids are < 32000; the tiny model's not
        work = [([t % vocab for t in p], n) for p, n in serving_workload(args.serving_requests)]
        serving = [
            measured(model, args.how, partial(serving_figures, model, work, b, 128))
            for b in batches
        ]
    return {
        "hardware": hardware(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "path": (decode or serving or [{"path": ""}])[0]["path"],
        "decode": decode,
        "serving": serving,
    }


def display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows for print_table: spreads as text, the long fields left to the JSON."""
    shown = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in ("path", "error")}
        if "step_ms_spread" in row:
            low, high = row.pop("step_ms_spread")
            row["spread"] = f"{low:.3f}-{high:.3f}"
        shown.append(row)
    return shown


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = arguments(argv)
    with tempfile.TemporaryDirectory() as tmp:
        shape = args.shape or ("1b" if args.device.startswith("cuda") else "tiny")
        model_dir = args.model_dir or make_model_dir(shape, Path(tmp))
        payload = run(args, model_dir)
    payload["model"] = str(args.model_dir) if args.model_dir else f"random Llama, {shape}"
    if args.out:
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    else:
        write_json(args.name or f"hf_static_peer_{torch.device(args.device).type}.json", payload)
    print(f"\n{payload['hardware']}; transformers {payload['transformers']}; {payload['path']}")
    print_table(display(payload["decode"]))
    if payload["serving"]:
        print_table(display(payload["serving"]))
    return payload


if __name__ == "__main__":
    main()
