from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import load_hf
from tests.router.tiny_tokenizer import make_served_model


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (vocabulary 300) with a byte-level BPE tokenizer: grammars need
    the tokenizer's token strings."""
    return make_served_model(tmp_path_factory.mktemp("structured") / "tiny-chat")


@pytest.fixture(scope="session")
def chat_hf(chat_model_dir: Path):
    return load_hf(chat_model_dir)
