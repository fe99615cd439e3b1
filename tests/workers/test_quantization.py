"""bitsandbytes int8 / nf4 projections: logits follow transformers' own bitsandbytes
integration, weights shrink, and LoRA still applies on top (CPU backend of bitsandbytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from adapters.ops import LoRABatch
from tests.factories import adapters_of, make_engine, prompt_logits, random_prompts
from tests.lora_factories import make_lora_engine
from workers.engine import LLMEngine
from workers.models.quantize import weight_bytes
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

HF_CONFIGS = {
    "int8": BitsAndBytesConfig(load_in_8bit=True),
    "nf4": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    ),
}
PROMPT = random_prompts([23])[0]


def logits_of(engine: LLMEngine, prompt: list[int], adapter_key: str | None = None) -> torch.Tensor:
    lora = None
    if adapter_key is not None:
        slots = adapters_of(engine).activate({adapter_key})
        lora = LoRABatch.build(adapters_of(engine).slots, [slots[adapter_key]] * len(prompt))
    return prompt_logits(engine, prompt, lora)


@pytest.mark.parametrize("method", ["int8", "nf4"])
def test_quantized_logits_follow_transformers_bitsandbytes(llama_dir: Path, method: str) -> None:
    engine = make_engine(llama_dir, block_size=4, quantization=method)
    hf = AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=HF_CONFIGS[method], device_map="cpu", dtype=torch.float32
    ).eval()
    with torch.inference_mode():
        theirs = hf(torch.tensor([PROMPT])).logits[0]
    ours = logits_of(engine, PROMPT)
    full = logits_of(make_engine(llama_dir, block_size=4), PROMPT)
    # Same quantization scheme as transformers: our error against full precision is about
    # theirs, and the two quantized models differ by far less than either does from it.
    ours_err = (ours - full).abs().mean()
    theirs_err = (theirs - full).abs().mean()
    assert ours_err > 1e-4  # it really is quantized
    assert 0.5 < ours_err / theirs_err < 2.0
    assert (ours - theirs).abs().mean() < 0.01
    assert (ours - theirs).abs().max() < 0.1
    assert weight_bytes(engine.runner.model) < 0.5 * weight_bytes(
        make_engine(llama_dir).runner.model
    )
    out = engine.generate([GenerateRequest("q", tuple(PROMPT), SamplingParams(max_tokens=8))])
    assert len(out["q"][0]) >= 1


def test_lora_on_quantized_weights(llama_dir: Path, adapter_root: Path) -> None:
    base = make_lora_engine(llama_dir, adapter_root, block_size=4)
    quantized = make_engine(llama_dir, block_size=4, lora=base.config.lora, quantization="int8")
    for engine in (base, quantized):
        engine.load_adapter("a1", "a1")
    key = adapters_of(base).resolve("a1")
    with_adapter = logits_of(quantized, PROMPT, adapters_of(quantized).resolve("a1"))
    assert (with_adapter - logits_of(quantized, PROMPT)).abs().max() > 0.1  # adapter applied
    # The adapter's effect matches the full-precision one up to int8 rounding of the base.
    assert (with_adapter - logits_of(base, PROMPT, key)).abs().max() < 0.05


def test_fused_projections_share_memory_with_the_originals(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    attn = engine.runner.model.model.decoder_layers()[0].self_attn
    assert attn.qkv is not None
    assert attn.q_proj.weight.untyped_storage().data_ptr() == attn.qkv.weight.data_ptr()
    params = sum(
        p.numel()
        for n, p in engine.runner.model.named_parameters()
        if ".qkv." not in n and ".gate_up." not in n
    )
    assert weight_bytes(engine.runner.model) == 4 * params  # float32, nothing counted twice
