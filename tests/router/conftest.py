from __future__ import annotations

from pathlib import Path

import pytest

from router.tokenizer import PromptTokenizer
from tests.router.tiny_tokenizer import make_served_model


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_served_model(tmp_path_factory.mktemp("served") / "tiny-chat")


@pytest.fixture(scope="session")
def prompt_tokenizer(served_model_dir: Path) -> PromptTokenizer:
    return PromptTokenizer.from_pretrained(str(served_model_dir))
