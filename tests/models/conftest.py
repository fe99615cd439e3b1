"""Shared fixtures for the bundled demo models: each model loaded once per session."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from tests.models.bundled_paths import DRAFT_DIR, FIXTURES, TARGET_DIR, load_causal_lm


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(TARGET_DIR, local_files_only=True)


@pytest.fixture(scope="session")
def target() -> torch.nn.Module:
    return load_causal_lm(TARGET_DIR)


@pytest.fixture(scope="session")
def draft() -> torch.nn.Module:
    return load_causal_lm(DRAFT_DIR)


@pytest.fixture(scope="session")
def fixture_domains() -> dict[str, str]:
    """domain -> held-out snippet text (see tests/fixtures/models/sources.json)."""
    sources = json.loads((FIXTURES / "sources.json").read_text())
    return {domain: (FIXTURES / f"{domain}.txt").read_text() for domain in sources}
