"""Build, count and save the Llama checkpoints (target and draft share all of this)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from models.training.settings import BuildSettings, ModelShape
from models.training.tokenizer_spec import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS


def llama_config(shape: ModelShape, settings: BuildSettings) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=settings.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.hidden_size // shape.num_attention_heads,
        max_position_embeddings=settings.max_position_embeddings,
        # transformers 5 takes the legacy rope_theta (into rope_parameters, the same config)
        # without declaring it; 4.x (pyproject allows >=4.45) knows only rope_theta
        rope_theta=settings.rope_theta,  # type: ignore[call-arg]
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=SPECIAL_TOKENS.index(BOS_TOKEN),
        eos_token_id=SPECIAL_TOKENS.index(EOS_TOKEN),
        pad_token_id=SPECIAL_TOKENS.index(PAD_TOKEN),
    )


def new_model(config: LlamaConfig, seed: int, device: torch.device) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # transformers' @wraps(nn.Module.to/cuda) leaves the method unbound to a checker
    return model.to(device=device, dtype=torch.float32)  # type: ignore[call-arg]


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_bf16(model: LlamaForCausalLM, out_dir: Path, tokenizer_dir: Path) -> None:
    """config.json + model.safetensors (bf16) + generation_config.json + the tokenizer files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    # transformers' @wraps(nn.Module.to/cuda) leaves the method unbound to a checker
    model.to(torch.bfloat16).save_pretrained(str(out_dir), safe_serialization=True)  # type: ignore[arg-type]
    model.to(torch.float32)  # type: ignore[arg-type]
    GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
    ).save_pretrained(str(out_dir))
    for path in sorted(tokenizer_dir.iterdir()):
        shutil.copyfile(path, out_dir / path.name)
