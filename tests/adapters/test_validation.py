"""Bad adapters and bad paths get a clear error before anything reaches the device, and the
engine keeps serving."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.factories import adapters_of, make_tiny_model
from tests.lora_factories import make_lora_engine, make_peft_adapter, peft_greedy
from workers.errors import AdapterLoadError, AdapterNotFoundError
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams


def broken_copy(
    src: Path,
    dst: Path,
    config: dict | None = None,
    tensors: dict | None = None,
    raw_weights: bytes | None = None,
) -> Path:
    shutil.copytree(src, dst)
    if config is not None:
        cfg = json.loads((dst / "adapter_config.json").read_text())
        cfg.update(config)
        (dst / "adapter_config.json").write_text(json.dumps(cfg))
    if tensors is not None:
        weights = load_file(str(dst / "adapter_model.safetensors"))
        weights.update(tensors)
        save_file(weights, str(dst / "adapter_model.safetensors"))
    if raw_weights is not None:
        (dst / "adapter_model.safetensors").write_bytes(raw_weights)
    return dst


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory: pytest.TempPathFactory, adapter_root: Path, llama_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("bad")
    good = adapter_root / "a1"
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    nan = load_file(str(good / "adapter_model.safetensors"))[key].clone()
    nan[0, 0] = float("nan")
    broken_copy(good, root / "dora", config={"use_dora": True})
    broken_copy(good, root / "bias", config={"bias": "lora_only"})
    broken_copy(good, root / "modules", config={"target_modules": ["q_proj", "lm_head"]})
    broken_copy(good, root / "not-lora", config={"peft_type": "PREFIX_TUNING"})
    broken_copy(good, root / "bad-json", config=None)
    (root / "bad-json" / "adapter_config.json").write_text("{not json")
    broken_copy(good, root / "corrupt", raw_weights=b"\x00garbage" * 10)
    broken_copy(good, root / "nan", tensors={key: nan})
    broken_copy(
        good, root / "extra-tensor", tensors={"base_model.model.lm_head.weight": torch.zeros(2, 2)}
    )
    (root / "empty").mkdir()
    other = make_tiny_model(
        tmp_path_factory.mktemp("other") / "wide", hidden_size=96, num_attention_heads=4
    )
    make_peft_adapter(other, root / "wrong-base", seed=0)
    deep = make_tiny_model(tmp_path_factory.mktemp("other") / "deep", num_hidden_layers=3)
    make_peft_adapter(deep, root / "wrong-layers", seed=0)
    make_peft_adapter(llama_dir, root / "rank-32", seed=0, rank=32)
    make_peft_adapter(llama_dir, root / "good", seed=1, rank=4)
    return root


CASES = {
    "dora": "DoRA",
    "bias": "trained biases",
    "modules": r"target modules \['lm_head'\] are not supported",
    "not-lora": "only LORA adapters",
    "bad-json": "not valid JSON",
    "corrupt": "missing or corrupt",
    "nan": "NaN or infinite",
    "extra-tensor": "unsupported tensor",
    "empty": "has no adapter_config.json",
    "wrong-base": "trained on another model",
    "wrong-layers": "layer 2 does not exist",
    "rank-32": "rank 32 exceeds max_lora_rank 16",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_adapter_is_refused_and_engine_serves(
    name: str, bad_root: Path, llama_dir: Path
) -> None:
    engine = make_lora_engine(llama_dir, bad_root)
    with pytest.raises(AdapterLoadError, match=CASES[name]):
        engine.load_adapter("x", name)
    assert engine.list_adapters() == []
    engine.load_adapter("good", "good")
    out = engine.generate(
        [
            GenerateRequest(
                "r", (5, 6, 7), SamplingParams(max_tokens=5, temperature=0), adapter="good"
            )
        ]
    )
    assert out["r"][0] == peft_greedy(llama_dir, bad_root / "good", [5, 6, 7], 5)


def test_path_traversal_is_refused(tmp_path: Path, bad_root: Path, llama_dir: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(bad_root / "good", outside)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "escape-dir")
    (root / "escape-file").mkdir()
    shutil.copy(bad_root / "good" / "adapter_config.json", root / "escape-file")
    os.symlink(
        outside / "adapter_model.safetensors", root / "escape-file" / "adapter_model.safetensors"
    )
    engine = make_lora_engine(llama_dir, root)
    attempts = {
        "../outside": "may not contain '..'",
        "x/../../outside": "may not contain '..'",
        str(outside): "not a directory inside the adapter roots",
        "escape-dir": "not a directory inside the adapter roots",
        "escape-file": "points outside the adapter roots",
        "/etc": "not a directory inside the adapter roots",
        "": "empty or malformed",
    }
    for path, message in attempts.items():
        with pytest.raises(AdapterLoadError, match=message):
            engine.load_adapter("x", path)
    assert engine.list_adapters() == []


def test_unknown_adapter_and_no_roots(llama_dir: Path, adapter_root: Path) -> None:
    engine = make_lora_engine(llama_dir, adapter_root)
    with pytest.raises(AdapterNotFoundError, match=r"adapter 'nope' is not loaded"):
        engine.add_request(GenerateRequest("r", (5,), SamplingParams(), adapter="nope"))
    with pytest.raises(AdapterNotFoundError):
        engine.unload_adapter("nope")
    no_roots = make_lora_engine(llama_dir, adapter_root)
    adapters_of(no_roots).config = adapters_of(no_roots).config.__class__(adapter_roots=())
    with pytest.raises(AdapterLoadError, match="configure adapter_roots"):
        no_roots.load_adapter("a1", "a1")
