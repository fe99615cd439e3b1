"""Engine configuration: frozen dataclasses, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.config import LoRAConfig
from workers.spec.config import SpecConfig


@dataclass(frozen=True)
class CacheConfig:
    """Paged KV cache sizing.

    num_blocks: a fixed block count; when None, blocks fill `memory_fraction` of the free
    device memory (CUDA) or of the available host memory (CPU), capped at what
    `max_num_seqs` sequences of `max_model_len` tokens can ever use.
    """

    block_size: int = 16
    num_blocks: int | None = None
    memory_fraction: float = 0.9
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")


@dataclass(frozen=True)
class SchedulerConfig:
    """Continuous batching limits per step."""

    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs to start: model directory, device, dtype and the limits."""

    model: str
    device: str = "cpu"
    dtype: str = "auto"
    max_model_len: int | None = None
    seed: int = 0
    cuda_graphs: bool = True  # capture decode steps as CUDA graphs (CUDA only)
    # Schedule step N+1 while step N runs on the device (greedy steps; None: on CUDA only).
    async_scheduling: bool | None = None
    quantization: str | None = None  # "int8" or "nf4" (bitsandbytes) for the projections
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    lora: LoRAConfig | None = None  # None: this engine serves the base model only
    spec: SpecConfig | None = None  # None: no speculative decoding
