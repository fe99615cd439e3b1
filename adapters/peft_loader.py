"""Read and validate a PEFT LoRA adapter directory (adapter_config.json +
adapter_model.safetensors) against the base model, before anything reaches the device."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from adapters.base_model import BaseModelShape
from adapters.config import SUPPORTED_MODULES
from adapters.errors import AdapterLoadError
from adapters.paths import confined_file
from adapters.weights import LoRAWeights

_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$"
)


def load_peft_adapter(
    directory: Path, model: BaseModelShape, max_rank: int, roots: tuple[str, ...]
) -> LoRAWeights:
    config = _read_config(confined_file(directory, "adapter_config.json", roots))
    rank, scaling = _check_config(config, max_rank)
    tensors = _read_tensors(confined_file(directory, "adapter_model.safetensors", roots))
    lora_a: dict[tuple[int, str], torch.Tensor] = {}
    lora_b: dict[tuple[int, str], torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterLoadError(
                f"unsupported tensor {key!r}: only LoRA A/B matrices of "
                f"{', '.join(SUPPORTED_MODULES)} are supported"
            )
        layer, module, which = int(match[1]), match[2], match[3]
        _check_tensor(key, tensor, layer, module, which, rank, model)
        target = lora_a if which == "A" else lora_b
        scaled = tensor.float() * (scaling if which == "B" else 1.0)
        if not torch.isfinite(scaled).all():
            raise AdapterLoadError(
                f"{key!r} times the scaling {scaling:g} (lora_alpha / r) overflows to "
                "infinity; lower lora_alpha or the weights"
            )
        target[(layer, module)] = scaled
    if not lora_a or lora_a.keys() != lora_b.keys():
        raise AdapterLoadError(
            "adapter_model.safetensors needs matching lora_A and lora_B "
            "weights for every target module"
        )
    return LoRAWeights(rank, scaling, lora_a, lora_b)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterLoadError(f"{path.name} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise AdapterLoadError(f"{path.name} must hold a JSON object")
    return config


def _check_config(config: dict[str, Any], max_rank: int) -> tuple[int, float]:
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterLoadError(
            f"peft_type {config.get('peft_type')!r} is not supported; only LORA adapters are"
        )
    unsupported = {
        "use_dora": "DoRA",
        "modules_to_save": "modules_to_save",
        "rank_pattern": "per-module ranks",
        "alpha_pattern": "per-module alphas",
        "layers_to_transform": "layers_to_transform",
    }
    for field, feature in unsupported.items():
        if config.get(field):
            raise AdapterLoadError(f"{feature} ({field}) is not supported; retrain without it")
    if config.get("bias", "none") != "none":
        raise AdapterLoadError("trained biases (bias != 'none') are not supported")
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    bad = sorted(set(targets) - set(SUPPORTED_MODULES))
    if bad:
        raise AdapterLoadError(
            f"target modules {bad} are not supported; supported: {', '.join(SUPPORTED_MODULES)}"
        )
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterLoadError(f"adapter rank r={rank!r} must be a positive integer")
    if rank > max_rank:
        raise AdapterLoadError(
            f"adapter rank {rank} exceeds max_lora_rank {max_rank}; "
            "raise max_lora_rank or use a smaller adapter"
        )
    alpha = config.get("lora_alpha", rank)
    if not _positive_number(alpha):
        raise AdapterLoadError(f"lora_alpha must be a finite number > 0, got {alpha!r}")
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    if not _positive_number(scaling):
        raise AdapterLoadError(
            f"the LoRA scaling (lora_alpha {alpha!r} over r {rank}) is {scaling!r}; it must "
            "be a finite number > 0"
        )
    return rank, float(scaling)


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterLoadError(
            f"cannot read {path.name}: the file is missing or corrupt ({type(e).__name__})"
        ) from e


def _check_tensor(
    key: str,
    tensor: torch.Tensor,
    layer: int,
    module: str,
    which: str,
    rank: int,
    model: BaseModelShape,
) -> None:
    if module not in SUPPORTED_MODULES:
        raise AdapterLoadError(f"module {module!r} in {key!r} is not supported")
    if layer >= model.num_hidden_layers:
        raise AdapterLoadError(
            f"{key!r}: layer {layer} does not exist in the base model "
            f"({model.num_hidden_layers} layers); wrong base model?"
        )
    in_features, out_features = module_shape(model, module)
    expected = (rank, in_features) if which == "A" else (out_features, rank)
    if tuple(tensor.shape) != expected:
        raise AdapterLoadError(
            f"{key!r} has shape {tuple(tensor.shape)} but the base model "
            f"needs {expected}; the adapter was trained on another model"
        )
    if not torch.isfinite(tensor).all():
        raise AdapterLoadError(f"{key!r} holds NaN or infinite values")


def module_shape(model: BaseModelShape, module: str) -> tuple[int, int]:
    """(in_features, out_features) of a projection of the base model."""
    hidden, inter = model.hidden_size, model.intermediate_size
    q_size = model.num_attention_heads * model.head_dim
    kv_size = model.num_key_value_heads * model.head_dim
    return {
        "q_proj": (hidden, q_size),
        "k_proj": (hidden, kv_size),
        "v_proj": (hidden, kv_size),
        "o_proj": (q_size, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }[module]
