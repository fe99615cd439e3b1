from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.factories import MODEL_TYPES, load_hf, make_tiny_model
from tests.lora_factories import make_peft_adapter


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random model per supported architecture; Qwen2 with tied embeddings."""
    root = tmp_path_factory.mktemp("models")
    return {
        arch: make_tiny_model(root / arch, arch, tie_word_embeddings=arch == "Qwen2ForCausalLM")
        for arch in MODEL_TYPES
    }


@pytest.fixture(scope="session")
def llama_dir(model_dirs: dict[str, Path]) -> Path:
    return model_dirs["LlamaForCausalLM"]


@pytest.fixture(scope="session")
def llama_hf(llama_dir: Path):
    return load_hf(llama_dir)


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory: pytest.TempPathFactory, llama_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    specs: dict[str, dict[str, Any]] = {
        "a1": dict(seed=1, rank=4),
        "a2": dict(seed=2, rank=8, targets=["q_proj", "v_proj"]),
        "a3": dict(seed=3, rank=16, use_rslora=True),
        "a4": dict(seed=4, rank=8, targets=["gate_proj", "up_proj", "down_proj"]),
        "a5": dict(seed=5, rank=8),
        "a6": dict(seed=6, rank=4),
        "a1-v2": dict(seed=11, rank=4),
    }
    for name, spec in specs.items():
        make_peft_adapter(llama_dir, root / name, **spec)
    return root
