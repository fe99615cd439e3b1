"""LoRAConfig: how many adapters live where, and where they may be read from."""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """max_loras: adapters active in one step (device weight slots); max_cpu_loras: adapters
    kept in host memory (LRU beyond that, re-read from disk on demand); adapter_roots:
    directories adapters may be loaded from (empty: loading is disabled)."""

    max_loras: int = 4
    max_lora_rank: int = 16
    max_cpu_loras: int = 8
    adapter_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_loras < 1 or self.max_lora_rank < 1:
            raise ValueError("max_loras and max_lora_rank must be >= 1")
        if self.max_cpu_loras < self.max_loras:
            raise ValueError(
                f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras}):"
                " every adapter in a device slot also stays in host memory"
            )
