"""The bundled models load offline with transformers and peft, in the shape the card promises."""

from __future__ import annotations

import json

import pytest
from peft import PeftModel
from transformers import AutoTokenizer

from tests.models.bundled_paths import (
    ADAPTER_NAMES,
    ADAPTERS_DIR,
    DRAFT_DIR,
    LORA_PROJECTIONS,
    TARGET_DIR,
    load_causal_lm,
)

MB = 1_000_000


def test_tokenizer_has_bos_eos_pad_and_round_trips_code(tokenizer) -> None:
    assert 4096 <= len(tokenizer) <= 8192
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.bos_token == "<|bos|>"
    assert tokenizer.pad_token is not None
    code = "def add(a, b):\n    return a + b\n"
    ids = tokenizer(code).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == code


def test_chat_template_renders_turns_and_generation_prompt(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write add."},
        {"role": "assistant", "content": "def add(a, b): ..."},
        {"role": "user", "content": "Now sub."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|bos|><|system|>\nBe brief.\n<|user|>\nWrite add.\n"
        "<|assistant|>\ndef add(a, b): ...\n<|endoftext|><|user|>\nNow sub.\n<|assistant|>\n"
    )


def test_draft_ships_the_same_tokenizer() -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (DRAFT_DIR / name).read_bytes() == (TARGET_DIR / name).read_bytes(), name
    draft_tokenizer = AutoTokenizer.from_pretrained(DRAFT_DIR, local_files_only=True)
    assert draft_tokenizer.eos_token_id == 0


def test_target_is_a_small_llama_with_grouped_query_attention(target) -> None:
    config = target.config
    assert config.model_type == "llama"
    assert config.num_key_value_heads < config.num_attention_heads
    assert config.tie_word_embeddings
    assert config.eos_token_id == 0 and config.bos_token_id == 1
    saved = json.loads((TARGET_DIR / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"
    assert (TARGET_DIR / "model.safetensors").stat().st_size < 9 * MB
    assert 3_000_000 < sum(p.numel() for p in target.parameters()) < 5_000_000


def test_draft_is_under_two_megabytes_with_the_target_vocabulary(target, draft) -> None:
    assert (DRAFT_DIR / "model.safetensors").stat().st_size < 2 * MB
    assert draft.config.vocab_size == target.config.vocab_size
    assert draft.config.num_hidden_layers < target.config.num_hidden_layers


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_adapter_is_peft_lora_on_every_projection(name: str) -> None:
    config = json.loads((ADAPTERS_DIR / name / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert 8 <= config["r"] <= 32
    assert set(config["target_modules"]) == LORA_PROJECTIONS
    model = PeftModel.from_pretrained(load_causal_lm(TARGET_DIR), ADAPTERS_DIR / name)
    wrapped = {
        module_name.rsplit(".", 1)[-1]
        for module_name, module in model.named_modules()
        if "default" in getattr(module, "lora_A", {})
    }
    assert wrapped == LORA_PROJECTIONS
