"""Engine settings as they appear under `args` in config.yaml (pydantic, every field
described), turned into the engine's frozen EngineConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.config import CacheConfig, EngineConfig, LoRAConfig, SchedulerConfig, SpecConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: str) -> str:
    """Absolute paths stay; relative ones are relative to the repository root."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (REPO_ROOT / p).resolve())


class LoRASettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_loras: int = Field(4, description="Adapters active in one step (device weight slots).")
    max_lora_rank: int = Field(16, description="Largest adapter rank accepted.")
    max_cpu_loras: int = Field(8, description="Adapters kept in host memory (LRU beyond).")

    def lora_config(self, adapter_roots: tuple[str, ...]) -> LoRAConfig:
        return LoRAConfig(
            max_loras=self.max_loras,
            max_lora_rank=self.max_lora_rank,
            max_cpu_loras=self.max_cpu_loras,
            adapter_roots=adapter_roots,
        )


class SpecSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    draft_model: str | None = Field(
        None, description="Colocated draft model directory (repo-relative or abs); None: none."
    )
    num_speculative_tokens: int = Field(4, description="Most tokens drafted per step.")
    draft_num_blocks: int = Field(512, description="KV blocks of the colocated draft.")
    max_batch_size: int = Field(32, description="Above this many running, no speculation.")
    min_acceptance: float = Field(0.2, description="Below this acceptance a request stops.")
    remote_timeout_s: float = Field(0.2, description="Skip a remote proposal slower than this.")

    def spec_config(self) -> SpecConfig:
        draft = resolve_path(self.draft_model) if self.draft_model else None
        return SpecConfig(
            draft_model=draft,
            num_speculative_tokens=self.num_speculative_tokens,
            draft_num_blocks=self.draft_num_blocks,
            max_batch_size=self.max_batch_size,
            min_acceptance=self.min_acceptance,
            remote_timeout_s=self.remote_timeout_s,
        )


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Literal["cpu", "cuda"] | str = Field("cpu", description="cpu, cuda or cuda:N.")
    dtype: str = Field("auto", description="auto, float32, float16 or bfloat16.")
    max_model_len: int | None = Field(
        None, description="Context length; defaults to the model's max_position_embeddings."
    )
    seed: int = Field(0, description="Seed of the sampler's random generator.")
    block_size: int = Field(16, description="Tokens per KV cache block.")
    num_blocks: int | None = Field(
        None, description="KV cache blocks; when unset, memory_fraction of free memory."
    )
    memory_fraction: float = Field(
        0.9, description="Fraction of free device (or host) memory for the KV cache."
    )
    enable_prefix_caching: bool = Field(True, description="Reuse KV blocks of shared prefixes.")
    max_num_seqs: int = Field(64, description="Most sequences in one batch.")
    max_num_batched_tokens: int = Field(2048, description="Token budget of one step.")
    lora: LoRASettings | None = Field(None, description="LoRA adapters; None: base model only.")
    spec: SpecSettings | None = Field(None, description="Speculative decoding; None: off.")

    def engine_config(self, model_dir: str, adapter_roots: tuple[str, ...] = ()) -> EngineConfig:
        return EngineConfig(
            model=model_dir,
            device=self.device,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            seed=self.seed,
            cache=CacheConfig(
                block_size=self.block_size,
                num_blocks=self.num_blocks,
                memory_fraction=self.memory_fraction,
                enable_prefix_caching=self.enable_prefix_caching,
            ),
            scheduler=SchedulerConfig(
                max_num_seqs=self.max_num_seqs,
                max_num_batched_tokens=self.max_num_batched_tokens,
            ),
            lora=self.lora.lora_config(adapter_roots) if self.lora else None,
            spec=self.spec.spec_config() if self.spec else None,
        )


def context_length(model_dir: str, max_model_len: int | None) -> int:
    """The context the engine will use: the model's, capped by max_model_len."""
    from workers.models.model_config import ModelConfig

    model_len = ModelConfig.from_dir(model_dir).max_position_embeddings
    return min(max_model_len or model_len, model_len)
