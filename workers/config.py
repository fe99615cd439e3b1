"""Engine configuration: frozen dataclasses, validated on construction.

Each option's `metadata["description"]` is its user-facing help: deployments/engine_settings.py
derives config.yaml's `llm.engine` settings from these fields, descriptions included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from adapters.config import LoRAConfig
from workers.spec.config import SpecConfig

Quantization = Literal["int8", "nf4"]


@dataclass(frozen=True)
class CacheConfig:
    """Paged KV cache sizing.

    num_blocks: a fixed block count; when None, blocks fill `memory_fraction` of the free
    device memory (CUDA) or of the available host memory (CPU), capped at what
    `max_num_seqs` sequences of `max_model_len` tokens can ever use.
    """

    block_size: int = field(default=16, metadata={"description": "Tokens per KV cache block."})
    num_blocks: int | None = field(
        default=None,
        metadata={"description": "KV cache blocks; when unset, memory_fraction of free memory."},
    )
    memory_fraction: float = field(
        default=0.9,
        metadata={"description": "Fraction of free device (or host) memory for the KV cache."},
    )
    enable_prefix_caching: bool = field(
        default=True, metadata={"description": "Reuse KV blocks of shared prefixes."}
    )

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

    max_num_seqs: int = field(default=64, metadata={"description": "Most sequences in one batch."})
    max_num_batched_tokens: int = field(
        default=2048, metadata={"description": "Token budget of one step."}
    )

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs to start: model directory, device, dtype and the limits."""

    model: str = field(metadata={"description": "The model's Hugging Face directory."})
    device: str = field(default="cpu", metadata={"description": "cpu, cuda or cuda:N."})
    dtype: str = field(
        default="auto", metadata={"description": "auto, float32, float16 or bfloat16."}
    )
    max_model_len: int | None = field(
        default=None,
        metadata={
            "description": "Context length; defaults to the model's max_position_embeddings."
        },
    )
    seed: int = field(
        default=0, metadata={"description": "Seed of the sampler's random generator."}
    )
    cuda_graphs: bool = field(
        default=True,
        metadata={"description": "Capture decode steps as CUDA graphs (CUDA only; not quantized)."},
    )
    mixed_graphs: bool = field(
        default=True,
        metadata={
            "description": "Also capture steps with prefill chunks (mixed with decodes) as "
            "CUDA graphs, by (token, sequence) bucket (with cuda_graphs)."
        },
    )
    mixed_graph_tokens: int = field(
        default=2048,
        metadata={
            "description": "Largest token bucket of the mixed-step graphs (capped at "
            "max_num_batched_tokens); larger steps run eagerly."
        },
    )
    async_scheduling: bool | None = field(
        default=None,
        metadata={
            "description": "Schedule step N+1 while step N runs on the device (greedy steps); "
            "unset: on CUDA only."
        },
    )
    quantization: Quantization | None = field(
        default=None,
        metadata={
            "description": "int8 or nf4 (bitsandbytes) for the decoder's projections; "
            "unset: the model's dtype."
        },
    )
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    lora: LoRAConfig | None = field(
        default=None, metadata={"description": "LoRA adapters; unset: the base model only."}
    )
    spec: SpecConfig | None = field(
        default=None, metadata={"description": "Speculative decoding; unset: off."}
    )
