"""The Llama family (Llama, Mistral, Qwen2) over a paged KV cache.

Module names mirror Hugging Face checkpoints so a safetensors state dict loads as is.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import cast

import torch
from torch import nn

from adapters.ops import LoRABatch
from workers.attention.metadata import AttentionMetadata
from workers.models.model_config import ModelConfig
from workers.models.rope import RotaryEmbedding

# (q, k, v, kv_cache, metadata) -> attention output; see workers/attention.
AttentionFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata], torch.Tensor
]


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return _cuda_ops().rms_norm(x, self.weight, self.eps)[0]
        # Normalized in float32 (as transformers does), by torch's fused kernel.
        normed = nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)

    def add_norm(
        self, x: torch.Tensor, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(x + residual), x + residual): one fused kernel on CUDA."""
        if x.is_cuda:
            return _cuda_ops().rms_norm(x, self.weight, self.eps, residual)
        summed = x + residual
        return self(summed), summed


def _cuda_ops() -> ModuleType:
    from workers.models import triton_ops  # needs triton: imported on CUDA only

    return triton_ops


def project(
    linear: nn.Linear, x: torch.Tensor, lora: LoRABatch | None, layer: int, name: str
) -> torch.Tensor:
    """linear(x), plus each token's LoRA update when the step uses adapters."""
    y = linear(x)
    return y if lora is None else lora.apply(layer, name, x, y)


class FusedLinear(nn.Module):
    """Several projections of the same input as one matmul. The original Linear modules keep
    views of the fused weight (no second copy), so LoRA and state dicts still see them."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        self.sizes = [linear.out_features for linear in linears]
        weight = torch.cat([linear.weight.detach() for linear in linears])
        has_bias = linears[0].bias is not None
        bias = torch.cat([linear.bias.detach() for linear in linears]) if has_bias else None
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        start = 0
        for linear, size in zip(linears, self.sizes, strict=True):
            linear.weight = nn.Parameter(self.weight[start : start + size], requires_grad=False)
            if self.bias is not None:
                linear.bias = nn.Parameter(self.bias[start : start + size], requires_grad=False)
            start += size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return nn.functional.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)


def project_all(
    fused: FusedLinear | None,
    linears: list[nn.Linear],
    names: tuple[str, ...],
    x: torch.Tensor,
    lora: LoRABatch | None,
    layer: int,
) -> list[torch.Tensor]:
    """Each projection of x (one matmul when fused), plus each token's LoRA update."""
    if fused is None:
        return [
            project(linear, x, lora, layer, n) for linear, n in zip(linears, names, strict=True)
        ]
    outputs = fused(x)
    if lora is None:
        return list(outputs)
    return [lora.apply(layer, n, x, y) for n, y in zip(names, outputs, strict=True)]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, attention_fn: AttentionFn, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, q_size, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, kv_size, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, kv_size, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(q_size, cfg.hidden_size, bias=cfg.o_bias)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        self.attention_fn = attention_fn
        self.qkv: FusedLinear | None = None  # set by LlamaForCausalLM.fuse_projections

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
        lora: LoRABatch | None,
    ) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        tokens, layer = x.shape[0], self.layer
        q, k, v = project_all(
            self.qkv,
            [self.q_proj, self.k_proj, self.v_proj],
            ("q_proj", "k_proj", "v_proj"),
            x,
            lora,
            layer,
        )
        q = q.reshape(tokens, self.num_heads, -1)
        k = k.reshape(tokens, self.num_kv_heads, -1)
        v = v.reshape(tokens, self.num_kv_heads, -1)
        q, k = self.rotary(positions, q, k)
        out = self.attention_fn(q, k, v, kv_cache, meta)
        return project(self.o_proj, out.reshape(tokens, -1), lora, layer, "o_proj")


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)
        self.gate_up: FusedLinear | None = None  # set by LlamaForCausalLM.fuse_projections

    def forward(self, x: torch.Tensor, lora: LoRABatch | None) -> torch.Tensor:
        gate, up = project_all(
            self.gate_up,
            [self.gate_proj, self.up_proj],
            ("gate_proj", "up_proj"),
            x,
            lora,
            self.layer,
        )
        cuda = gate.is_cuda  # one fused kernel there
        act = _cuda_ops().silu_mul(gate, up) if cuda else nn.functional.silu(gate) * up
        return project(self.down_proj, act, lora, self.layer, "down_proj")


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, attention_fn: AttentionFn, layer: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, attention_fn, layer)
        self.mlp = MLP(cfg, layer)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        positions: torch.Tensor,
        kv_cache: torch.Tensor,
        meta: AttentionMetadata,
        lora: LoRABatch | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the previous layer's output, residual: the stream it adds to (None before the
        first layer) -> the same pair for the next layer (adds fused into the norms)."""
        if residual is None:
            h, residual = self.input_layernorm(x), x
        else:
            h, residual = self.input_layernorm.add_norm(x, residual)
        h = self.self_attn(h, positions, kv_cache, meta, lora)
        h, residual = self.post_attention_layernorm.add_norm(h, residual)
        return self.mlp(h, lora), residual


class LlamaBackbone(nn.Module):
    def __init__(self, cfg: ModelConfig, attention_fn: AttentionFn) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, attention_fn, i) for i in range(cfg.num_hidden_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def decoder_layers(self) -> list[DecoderLayer]:
        """self.layers with their type: nn.ModuleList's items are plain Modules to a checker."""
        return [cast(DecoderLayer, layer) for layer in self.layers]


class LlamaForCausalLM(nn.Module):
    """Token ids in, hidden states and logits out, with keys and values in paged blocks."""

    def __init__(self, cfg: ModelConfig, attention_fn: AttentionFn) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaBackbone(cfg, attention_fn)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[torch.Tensor],
        meta: AttentionMetadata,
        lora: LoRABatch | None = None,
    ) -> torch.Tensor:
        """input_ids, positions [T] -> final hidden states [T, hidden]."""
        x, residual = self.model.embed_tokens(input_ids), None
        for layer, kv_cache in zip(self.model.layers, kv_caches, strict=True):
            x, residual = layer(x, residual, positions, kv_cache, meta, lora)
        assert residual is not None
        return self.model.norm.add_norm(x, residual)[0]

    def fuse_projections(self) -> None:
        """q/k/v and gate/up each become one matmul (fewer kernel launches per step).
        Only for plain nn.Linear weights: quantized layers are left alone."""
        for layer in self.model.decoder_layers():
            attn, mlp = layer.self_attn, layer.mlp
            qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
            if all(type(m) is nn.Linear for m in qkv):
                attn.qkv = FusedLinear(qkv)
            if all(type(m) is nn.Linear for m in (mlp.gate_proj, mlp.up_proj)):
                mlp.gate_up = FusedLinear([mlp.gate_proj, mlp.up_proj])

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] -> float32 logits [N, vocab]."""
        return self.lm_head(hidden).float()
