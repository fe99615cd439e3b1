"""Where the bundled models and their test fixtures live, and how the tests load them."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
TARGET_DIR = MODELS / "tandem-code-8m"
DRAFT_DIR = MODELS / "tandem-code-draft"
ADAPTERS_DIR = MODELS / "adapters"
FIXTURES = ROOT / "tests" / "fixtures" / "models"
ADAPTER_NAMES = ("python-tests", "c-headers", "docstrings")
LORA_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def load_causal_lm(path: Path) -> torch.nn.Module:
    """The shipped bf16 weights in fp32, offline."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model.eval()
