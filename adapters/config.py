"""LoRAConfig: how many adapters live where, and where they may be read from."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """Each option's `metadata["description"]` is its user-facing help (config.yaml's
    `llm.engine.lora`, derived in deployments/engine_settings.py)."""

    max_loras: int = field(
        default=4, metadata={"description": "Adapters active in one step (device weight slots)."}
    )
    max_lora_rank: int = field(
        default=16, metadata={"description": "Largest adapter rank accepted."}
    )
    max_cpu_loras: int = field(
        default=8,
        metadata={
            "description": "Adapters kept in host memory (LRU beyond, re-read from disk on "
            "demand); at least max_loras."
        },
    )
    adapter_roots: tuple[str, ...] = field(
        default=(),
        metadata={"description": "Directories adapters may be loaded from (empty: disabled)."},
    )

    def __post_init__(self) -> None:
        if self.max_loras < 1 or self.max_lora_rank < 1:
            raise ValueError("max_loras and max_lora_rank must be >= 1")
        if self.max_cpu_loras < self.max_loras:
            raise ValueError(
                f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras}):"
                " every adapter in a device slot also stays in host memory"
            )
