"""The attention a model runs with on a device: Triton paged kernels on CUDA, the plain-torch
reference elsewhere (and as the oracle the kernels are tested against)."""

from __future__ import annotations

import torch

from workers.attention.reference import ReferenceAttention
from workers.models.model_config import ModelConfig


def paged_attention(cfg: ModelConfig, device: torch.device) -> ReferenceAttention:
    scale = cfg.head_dim**-0.5
    if device.type != "cuda":
        return ReferenceAttention(scale, cfg.sliding_window)
    from workers.attention.triton_decode import paged_decode_attention  # needs triton
    from workers.attention.triton_kv import write_kv_paged
    from workers.attention.triton_prefill import (
        paged_prefill_attention,
        paged_prefill_attention_tiled,
    )

    return ReferenceAttention(
        scale,
        cfg.sliding_window,
        paged_decode_attention,
        paged_prefill_attention,
        write_kv_paged,
        paged_prefill_attention_tiled,
    )
