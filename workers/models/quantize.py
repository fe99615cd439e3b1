"""bitsandbytes weights for the decoder's projections: int8 (LLM.int8) or nf4 (4-bit NormalFloat).

Embeddings, norms and the LM head stay in the model's dtype, as transformers' bitsandbytes
integration does. LoRA still applies on top: adapters add to a projection's output,
whatever module computes it.
"""

from __future__ import annotations

import torch
from torch import nn

from workers.models.llama import LlamaForCausalLM

QUANTIZATIONS = ("int8", "nf4")
_PROJECTIONS = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}


def quantize_projections(model: LlamaForCausalLM, method: str, device: torch.device) -> None:
    """Replace every attention and MLP projection with its bitsandbytes counterpart, in place."""
    if method not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {method!r}; use one of {', '.join(QUANTIZATIONS)}")
    import bitsandbytes as bnb  # imported here: loading it costs time and logs

    compute_dtype = model.model.embed_tokens.weight.dtype
    for layer in model.model.layers:
        for block_name, names in _PROJECTIONS.items():
            block = getattr(layer, block_name)
            for name in names:
                linear: nn.Linear = getattr(block, name)
                setattr(block, name, _quantized(bnb, linear, method, compute_dtype, device))


def _quantized(
    bnb, linear: nn.Linear, method: str, compute_dtype: torch.dtype, device: torch.device
) -> nn.Module:
    weight = linear.weight.data.to("cpu", torch.float16 if device.type == "cuda" else compute_dtype)
    has_bias = linear.bias is not None
    if method == "int8":
        module = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            has_fp16_weights=False,
            threshold=6.0,
        )
        module.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        module = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            compute_dtype=compute_dtype,
            quant_type="nf4",
        )
        module.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
    if has_bias:
        module.bias = nn.Parameter(linear.bias.data.to(compute_dtype), requires_grad=False)
    return module.to(device)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer as stored (quantized ones packed), each storage
    once: fused projections and tied embeddings share theirs."""
    storages = {}
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())
