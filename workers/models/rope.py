"""Rotary position embeddings, including linear and llama3 frequency scaling."""

from __future__ import annotations

import math

import torch

from workers.models.model_config import RopeScaling


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling) -> torch.Tensor:
    """Per-pair rotation frequencies, shape [head_dim // 2], float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    if scaling.rope_type == "llama3":
        return _llama3_scaled(inv_freq, scaling)
    return inv_freq


def _llama3_scaled(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    interpolated = (1 - smooth) * scaled / s.factor + smooth * scaled
    in_band = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(in_band, interpolated, scaled)


class RotaryEmbedding(torch.nn.Module):
    """Applies RoPE to query and key vectors at given absolute positions.

    Uses the "rotate half" layout of Hugging Face Llama checkpoints.
    """

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling) -> None:
        super().__init__()
        # Plain attributes, not buffers: they stay float32 when the weights change dtype.
        self.inv_freq = inverse_frequencies(head_dim, theta, scaling)
        self.cos_sin: torch.Tensor | None = None  # [max_positions, 2, head_dim] when cached

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [T]; q [T, Hq, D]; k [T, Hkv, D] -> rotated (q, k), same shapes and dtype."""
        if q.is_cuda and self.cos_sin is not None:  # one fused kernel each, in place
            from workers.models.triton_ops import rotary_  # needs triton: CUDA only

            return rotary_(positions, q, self.cos_sin), rotary_(positions, k, self.cos_sin)
        if self.cos_sin is not None:  # one gather instead of computing the angles each step
            table = self.cos_sin[positions]
            cos, sin = table[:, 0, None, :], table[:, 1, None, :]
        else:
            cos, sin = cos_sin_of(positions, self.inv_freq)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def cos_sin_of(
    positions: torch.Tensor, inv_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every rotation angle, each [T, 1, head_dim], float32."""
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[:, None, :], emb.sin()[:, None, :]


def cos_sin_table(max_positions: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """[max_positions, 2, head_dim] float32: the same values cos_sin_of computes."""
    cos, sin = cos_sin_of(torch.arange(max_positions, device=inv_freq.device), inv_freq)
    return torch.stack((cos[:, 0], sin[:, 0]), dim=1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x_float = x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x_float[..., half:], x_float[..., :half]), dim=-1)
    return (x_float * cos + rotated * sin).to(x.dtype)
