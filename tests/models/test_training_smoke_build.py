"""The single rebuild command runs end to end (at toy size, on CPU) and its output loads."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.training.__main__ import build
from models.training.settings import smoke_settings


@pytest.mark.slow
def test_smoke_build_writes_loadable_models_and_a_manifest(tmp_path) -> None:
    settings = smoke_settings()
    out = tmp_path / "models"
    report = build(settings, out, tmp_path / "work", torch.device("cpu"))
    manifest = json.loads((out / "corpus_manifest.json").read_text())
    assert set(manifest["domains"]) >= {"python", "python-tests", "c-headers", "docstrings"}
    assert report["target"]["steps_done"] == settings.target_train.steps
    target_dir = out / settings.target_name
    tokenizer = AutoTokenizer.from_pretrained(target_dir, local_files_only=True)
    target = AutoModelForCausalLM.from_pretrained(target_dir, local_files_only=True)
    assert target.config.vocab_size == len(tokenizer) == settings.vocab_size
    for spec in settings.adapters:
        PeftModel.from_pretrained(target, out / "adapters" / spec.name, adapter_name=spec.name)
