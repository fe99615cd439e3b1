"""Test factories for LoRA: PEFT adapters with random weights, the peft oracle, engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from tests.factories import engine_config, hf_greedy, load_hf
from workers.config import EngineConfig, LoRAConfig
from workers.engine import LLMEngine

ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_peft_adapter(
    base_dir: Path,
    out: Path,
    seed: int,
    rank: int = 8,
    targets: list[str] | None = None,
    **config: Any,
) -> Path:
    """A PEFT LoRA adapter with random (non-zero) A and B, saved as peft saves it."""
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=targets or ALL_MODULES,
        init_lora_weights=False,
        **config,
    )
    model = get_peft_model(load_hf(base_dir), lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.15)
    model.save_pretrained(str(out))
    return out


def peft_greedy(
    base_dir: Path, adapter_dir: Path | None, prompt: list[int], max_new_tokens: int
) -> list[int]:
    model = load_hf(base_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir).eval()
    return hf_greedy(model, prompt, max_new_tokens)


def lora_engine_config(base_dir: Path, root: Path, **lora: Any) -> EngineConfig:
    kwargs = {
        k: lora.pop(k) for k in list(lora) if k in ("num_blocks", "block_size", "max_num_seqs")
    }
    config = LoRAConfig(adapter_roots=(str(root),), **lora)
    return engine_config(base_dir, lora=config, **kwargs)


def make_lora_engine(base_dir: Path, root: Path, **lora: Any) -> LLMEngine:
    return LLMEngine(lora_engine_config(base_dir, root, **lora))
