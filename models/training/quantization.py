"""Perplexity and weight memory of the target as shipped (bf16) and through bitsandbytes.

int8 is LLM.int8 (8-bit weights, outliers in fp16); nf4 is 4-bit NormalFloat with bf16
compute. Both run on CPU with bitsandbytes >= 0.45. Embeddings stay bf16 in every variant
(bitsandbytes quantises nn.Linear layers only; the tied lm_head is the embedding).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from models.training.measure import heldout_loss


def variants() -> dict[str, BitsAndBytesConfig | None]:
    return {
        "bf16": None,
        "int8": BitsAndBytesConfig(load_in_8bit=True),
        "nf4": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
    }


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every distinct tensor in the state dict: quantised weights with their scales
    and quantisation state, norms, and the (tied, counted once) embedding."""
    seen: dict[tuple[int, int | torch.SymInt], int] = {}
    for tensor in model.state_dict().values():
        if isinstance(tensor, torch.Tensor):
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            seen[key] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


@contextmanager
def quiet_int8_casts() -> Iterator[None]:
    """LLM.int8 casts bf16 activations to fp16 and logs a warning on every matmul."""
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    level = bnb_logger.level
    bnb_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bnb_logger.setLevel(level)


def quantization_table(target_dir: Path, windows: torch.Tensor) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for name, config in variants().items():
        with quiet_int8_casts():
            model = AutoModelForCausalLM.from_pretrained(
                str(target_dir),
                dtype=torch.bfloat16,
                quantization_config=config,
                device_map="cpu",
            )
            loss = heldout_loss(model, windows)
        rows.append(
            {
                "variant": name,
                "loss": loss,
                "perplexity": math.exp(loss),
                "weight_bytes": weight_bytes(model),
            }
        )
    base = rows[0]
    for row in rows:
        row["weight_ratio_vs_bf16"] = row["weight_bytes"] / base["weight_bytes"]
        row["perplexity_change_vs_bf16"] = row["perplexity"] / base["perplexity"] - 1
    return rows
