"""Measure the shipped models and write models/metrics.json and models/README.md.

`python -m models.training.evaluate [--models DIR]` runs on CPU in a few minutes: it reads only
the files under models/ (weights, tokenizer, adapters, the shipped held-out texts).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.training.card import write_card
from models.training.heldout import HeldOut, load_heldout
from models.training.measure import chat_reply, complete, greedy_acceptance, heldout_loss
from models.training.quantization import quantization_table
from models.training.settings import BuildSettings, full_settings

if TYPE_CHECKING:
    from models.training.measure import CausalLM

SEQ_LEN = 512
PYTHON_WINDOWS = 32
ADAPTER_WINDOWS = 24
SPEC_PROMPTS, SPEC_PROMPT_LEN, SPEC_NEW_TOKENS, SPEC_K = 16, 64, 48, 4
SAMPLE_PROMPTS = (
    "def parse_header(line):",
    "class Buffer:",
    "#include <stdint.h>",
)
SAMPLE_TOKENS = 40
CHAT_REQUEST = "Write a Python function named is_even. Return True if n is an even number."


def load_model(path: Path) -> CausalLM:
    """Shipped bf16 weights, computed in fp32 (exact weights, CPU-friendly arithmetic)."""
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def safetensors_parameters(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118


def directory_size(path: Path) -> int:
    """Bytes of the files git would track (bytecode caches left out)."""
    return sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def sizes(models_dir: Path, settings: BuildSettings) -> dict:
    rows = {}
    for name in (settings.target_name, settings.draft_name):
        weights = models_dir / name / "model.safetensors"
        rows[name] = {
            "parameters": safetensors_parameters(weights),
            "weight_bytes": weights.stat().st_size,
            "directory_bytes": directory_size(models_dir / name),
        }
    for spec in settings.adapters:
        weights = models_dir / "adapters" / spec.name / "adapter_model.safetensors"
        rows[f"adapters/{spec.name}"] = {
            "parameters": safetensors_parameters(weights),
            "weight_bytes": weights.stat().st_size,
            "directory_bytes": directory_size(weights.parent),
        }
    rows["models/ (all files)"] = {"directory_bytes": directory_size(models_dir)}
    return rows


def loss_row(loss: float) -> dict[str, float]:
    return {"loss": loss, "perplexity": math.exp(loss)}


def adapter_rows(
    models_dir: Path, settings: BuildSettings, target_dir: Path, heldout: dict[str, HeldOut]
) -> dict:
    rows = {}
    for spec in settings.adapters:
        windows = heldout[spec.domain].windows(SEQ_LEN, ADAPTER_WINDOWS)
        base = load_model(target_dir)
        base_loss = heldout_loss(base, windows)
        tuned = PeftModel.from_pretrained(base, str(models_dir / "adapters" / spec.name)).eval()
        adapter_loss = heldout_loss(tuned, windows)
        rows[spec.name] = {
            "domain": spec.domain,
            "rank": spec.rank,
            "heldout_tokens": int(windows.numel()),
            "base_loss": base_loss,
            "adapter_loss": adapter_loss,
            "loss_reduction": base_loss - adapter_loss,
        }
    return rows


def samples(models_dir: Path, settings: BuildSettings, target_dir: Path, tokenizer) -> dict:
    completions = {
        "base": [
            complete(load_model(target_dir), tokenizer, p, SAMPLE_TOKENS) for p in SAMPLE_PROMPTS
        ]
    }
    for spec in settings.adapters:
        tuned = PeftModel.from_pretrained(
            load_model(target_dir), str(models_dir / "adapters" / spec.name)
        ).eval()
        completions[spec.name] = [
            complete(tuned, tokenizer, p, SAMPLE_TOKENS) for p in SAMPLE_PROMPTS
        ]
    return {
        "decoding": f"greedy, repetition_penalty 1.2, {SAMPLE_TOKENS} new tokens",
        "prompts": list(SAMPLE_PROMPTS),
        "completions": completions,
        "chat": {
            "request": CHAT_REQUEST,
            "reply": chat_reply(load_model(target_dir), tokenizer, CHAT_REQUEST, 80),
        },
    }


def evaluate(models_dir: Path, settings: BuildSettings) -> dict:
    start = time.monotonic()
    target_dir = models_dir / settings.target_name
    tokenizer_file = target_dir / "tokenizer.json"
    domains = ("python", *(a.domain for a in settings.adapters))
    heldout = {d: load_heldout(models_dir, d, tokenizer_file) for d in domains}
    python_windows = heldout["python"].windows(SEQ_LEN, PYTHON_WINDOWS)
    target, draft = load_model(target_dir), load_model(models_dir / settings.draft_name)
    prompts = heldout["python"].prompts(SPEC_PROMPTS, SPEC_PROMPT_LEN)
    acceptance = greedy_acceptance(target, draft, prompts, SPEC_NEW_TOKENS, SPEC_K)
    metrics = {
        "sizes": sizes(models_dir, settings),
        "heldout": {
            "seq_len": SEQ_LEN,
            "python_tokens": int(python_windows.numel()),
            "documents": {d: [doc["source"] for doc in h.documents] for d, h in heldout.items()},
        },
        "perplexity": {
            "target": loss_row(heldout_loss(target, python_windows)),
            "draft": loss_row(heldout_loss(draft, python_windows)),
            "uniform": loss_row(math.log(target.config.vocab_size)),
        },
        "speculative": {
            **acceptance.__dict__,
            "acceptance_rate": acceptance.acceptance_rate,
            "tokens_per_target_step": acceptance.tokens_per_target_step,
        },
        "adapters": adapter_rows(models_dir, settings, target_dir, heldout),
        "quantization": quantization_table(target_dir, python_windows),
        "samples": samples(
            models_dir, settings, target_dir, AutoTokenizer.from_pretrained(str(target_dir))
        ),
    }
    metrics["evaluated_with"] = environment(time.monotonic() - start)
    return metrics


def environment(seconds: float) -> dict:
    import bitsandbytes
    import peft
    import transformers

    return {
        "seconds": round(seconds, 1),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(__file__).parents[1])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    settings = full_settings()
    metrics = evaluate(args.models, settings)
    (args.models / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(args.models, settings)
    print(f"wrote {args.models / 'metrics.json'} and README.md", flush=True)


if __name__ == "__main__":
    main()
