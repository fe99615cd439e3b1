from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import MODEL_TYPES, load_hf, make_tiny_model


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
