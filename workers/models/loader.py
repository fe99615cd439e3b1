"""Load a Hugging Face model directory (config.json + *.safetensors) into our Llama model."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from workers.models.llama import AttentionFn, LlamaForCausalLM
from workers.models.model_config import ModelConfig
from workers.models.rope import cos_sin_table, inverse_frequencies

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str, model_dtype: str, device: torch.device) -> torch.dtype:
    """`auto` keeps the checkpoint's dtype on GPU and uses float32 on CPU (exact and faster)."""
    if dtype == "auto":
        return DTYPES.get(model_dtype, torch.float32) if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(
    model_dir: str | Path,
    attention_fn: AttentionFn,
    dtype: torch.dtype,
    device: torch.device,
) -> LlamaForCausalLM:
    model_dir = Path(model_dir)
    cfg = ModelConfig.from_dir(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(
            f"no *.safetensors weights in {model_dir}; save the model with "
            "save_pretrained(..., safe_serialization=True)"
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg, attention_fn)
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    _check_keys(model, state, cfg)
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model = model.to(device=device, dtype=dtype).eval()
    _materialize_rope(model, cfg, device)
    return model


def _check_keys(model: LlamaForCausalLM, state: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    expected = set(model.state_dict())
    if cfg.tie_word_embeddings:
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(state))
    unexpected = sorted(k for k in set(state) - expected if "rotary_emb" not in k)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match {cfg.architecture}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; is config.json from the same checkpoint?"
        )


def _materialize_rope(model: LlamaForCausalLM, cfg: ModelConfig, device: torch.device) -> None:
    # RoPE frequencies are not in the checkpoint (built on the meta device) and stay float32
    # whatever the weights' dtype.
    inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling).to(device)
    table = cos_sin_table(cfg.max_position_embeddings, inv_freq)  # shared by every layer
    for layer in model.model.decoder_layers():
        layer.self_attn.rotary.inv_freq = inv_freq
        layer.self_attn.rotary.cos_sin = table
