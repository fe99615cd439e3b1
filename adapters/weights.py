"""LoRAWeights: one adapter's validated low-rank matrices, in host memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LoRAWeights:
    """For each (layer, module): A [rank, in_features] and B [out_features, rank], with the
    adapter's scaling (lora_alpha / rank, or / sqrt(rank) for rsLoRA) already folded into B,
    so the update of that projection is x @ A.T @ B.T."""

    rank: int
    scaling: float
    lora_a: dict[tuple[int, str], torch.Tensor]
    lora_b: dict[tuple[int, str], torch.Tensor]

    @property
    def nbytes(self) -> int:
        tensors = [*self.lora_a.values(), *self.lora_b.values()]
        return sum(t.numel() * t.element_size() for t in tensors)
