"""Helpers shared by benchmark scripts: random models of a given shape, tables, JSON."""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase

RESULTS = Path(__file__).resolve().parent / "results"


def save_random_llama(path: Path, seed: int = 0, **shape: Any) -> Path:
    """A random-weight Llama of the given shape saved as a Hugging Face directory."""
    config = AutoConfig.for_model("llama", bos_token_id=1, eos_token_id=2, **shape)
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    return path


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """One sequence of ids as text, special tokens dropped."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert isinstance(text, str)  # one sequence decodes to one text
    return text


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(_fmt(row[c]).ljust(widths[c]) for c in columns))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
