"""models.smollm2.convert on a GGUF this test writes itself (tiny random Llama, Q4_1): the
directory it makes loads in transformers and in the engine with equal logits, keeps the
tokenizer and chat template, and is made once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.smollm2.convert import REQUIRED_FILES, convert
from tests.factories import make_engine, prompt_logits
from tests.models.tiny_gguf import write_tiny_llama_gguf

MESSAGES = [{"role": "user", "content": "the theatre in Athens"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q4_1.gguf")


@pytest.fixture(scope="module")
def converted(gguf_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "tiny-llama"
    convert(gguf_file, out)
    return out


def load(path: Path, **kwargs) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, local_files_only=True, **kwargs
    ).eval()


def test_the_directory_is_a_plain_fp32_llama_with_tied_embeddings(converted: Path) -> None:
    assert all((converted / name).is_file() for name in REQUIRED_FILES)
    config = json.loads((converted / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert config["tie_word_embeddings"] and config["dtype"] == "float32"
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    generation = json.loads((converted / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (1, 2)


def test_transformers_gives_the_gguf_models_logits_and_tokens(
    gguf_file: Path, converted: Path
) -> None:
    from_gguf = load(gguf_file.parent, gguf_file=gguf_file.name)
    ours = load(converted)
    gguf_tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == gguf_tok.apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True
    )
    assert isinstance(text, str)  # tokenize=False
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids == gguf_tok(text, add_special_tokens=False).input_ids
    assert ids[0] == 1 and tokenizer.decode(ids) == text
    with torch.no_grad():
        assert torch.equal(ours(torch.tensor([ids])).logits, from_gguf(torch.tensor([ids])).logits)


def test_the_engine_gives_transformers_logits_on_the_converted_model(converted: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False).input_ids[:24]  # prompt_logits: 6 blocks
    engine = make_engine(converted, num_blocks=32, block_size=4)
    with torch.no_grad():
        theirs = load(converted)(torch.tensor([ids])).logits[0]
    ours = prompt_logits(engine, ids)
    assert ours.shape == theirs.shape == (len(ids), len(tokenizer))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert theirs.std() > 0.1  # random weights large enough for distinct logits


def test_conversion_runs_once_and_again_when_the_gguf_changes(
    gguf_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    first = convert(gguf_file, out)
    weights = out / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert convert(gguf_file, out) == first
    assert weights.stat().st_mtime_ns == written  # up to date: nothing rewritten
    other = write_tiny_llama_gguf(tmp_path / "other.gguf", seed=1)
    second = convert(other, out)
    assert second.source_sha256 != first.source_sha256
    assert weights.stat().st_mtime_ns != written
    assert not (tmp_path / "model.partial").exists()
