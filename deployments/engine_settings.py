"""Engine settings as they appear under `args` in config.yaml (pydantic, every field
described), turned into the engine's frozen EngineConfig.

The fields are derived from the engine's dataclasses (deployments/dataclass_settings.py):
EngineConfig's options and those of its CacheConfig and SchedulerConfig side by side at the
top (config.yaml's flat `engine:`), `lora:` from LoRAConfig and `spec:` from SpecConfig.
Set elsewhere: EngineConfig.model (the app's `model`) and LoRAConfig.adapter_roots
(`adapters.roots`). Values are checked as the dataclasses check them, when settings parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, model_validator

from deployments.dataclass_settings import derived_model, field_definitions, merged, values_of
from workers.config import CacheConfig, EngineConfig, LoRAConfig, SchedulerConfig, SpecConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# Options of the engine's dataclasses that config.yaml sets outside `engine:`.
SET_ELSEWHERE = {EngineConfig: ("model",), LoRAConfig: ("adapter_roots",)}
FLATTENED = ("cache", "scheduler")  # EngineConfig's sections whose options sit at the top


def resolve_path(path: str) -> str:
    """Absolute paths stay; relative ones are relative to the repository root."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (REPO_ROOT / p).resolve())


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _LoRASettings(_Settings):
    def lora_config(self, adapter_roots: tuple[str, ...]) -> LoRAConfig:
        return LoRAConfig(**self.model_dump(), adapter_roots=adapter_roots)

    @model_validator(mode="after")
    def _valid(self) -> Any:
        self.lora_config(())
        return self


class _SpecSettings(_Settings):
    def spec_config(self) -> SpecConfig:
        values = self.model_dump()
        draft = values["draft_model"]
        return SpecConfig(**{**values, "draft_model": resolve_path(draft) if draft else None})

    @model_validator(mode="after")
    def _valid(self) -> Any:
        self.spec_config()
        return self


class _EngineSettings(_Settings):
    def engine_config(self, model_dir: str, adapter_roots: tuple[str, ...] = ()) -> EngineConfig:
        values = self.model_dump(exclude={"lora", "spec"})
        derived = cast("EngineSettings", self)  # the fields are EngineSettings' (EngineFields)
        lora, spec = derived.lora, derived.spec
        return EngineConfig(
            model=model_dir,
            **values_of(EngineConfig, values),
            cache=CacheConfig(**values_of(CacheConfig, values)),
            scheduler=SchedulerConfig(**values_of(SchedulerConfig, values)),
            lora=lora.lora_config(adapter_roots) if lora else None,
            spec=spec.spec_config() if spec else None,
        )

    @model_validator(mode="after")
    def _valid(self) -> Any:
        self.engine_config("model")
        return self


class SpecFields:
    """SpecSettings' fields that code reads by name, as a type checker sees them."""

    draft_model: str | None


class EngineFields:
    """EngineSettings' fields that code reads by name, as a type checker sees them
    (tests/deployments/test_settings_types.py holds them to the derived models)."""

    device: str
    dtype: str
    max_model_len: int | None
    block_size: int
    num_blocks: int | None
    max_num_seqs: int
    lora: LoRASettings | None
    spec: SpecSettings | None


if TYPE_CHECKING:
    # create_model's fields are invisible to a type checker: to it, each derived model is its
    # base with the attributes above (plain classes, so not fields to pydantic's plugin).
    class LoRASettings(_LoRASettings): ...

    class SpecSettings(_SpecSettings, SpecFields): ...

    class EngineSettings(_EngineSettings, EngineFields): ...

else:
    LoRASettings = derived_model(
        "LoRASettings",
        _LoRASettings,
        __name__,
        **field_definitions(LoRAConfig, exclude=SET_ELSEWHERE[LoRAConfig]),
    )
    SpecSettings = derived_model(
        "SpecSettings",
        _SpecSettings,
        __name__,
        **field_definitions(
            SpecConfig,
            descriptions={
                "draft_model": "Colocated draft model directory (repo-relative or absolute), with "
                "the target's tokenizer; unset: no colocated draft."
            },
        ),
    )
    EngineSettings = derived_model(
        "EngineSettings",
        _EngineSettings,
        __name__,
        **merged(
            field_definitions(
                EngineConfig,
                exclude=(*SET_ELSEWHERE[EngineConfig], *FLATTENED),
                annotations={"lora": LoRASettings | None, "spec": SpecSettings | None},
            ),
            field_definitions(CacheConfig),
            field_definitions(SchedulerConfig),
        ),
    )


def context_length(model_dir: str, max_model_len: int | None) -> int:
    """The context the engine will use: the model's, capped by max_model_len."""
    from workers.models.model_config import ModelConfig

    model_len = ModelConfig.from_dir(model_dir).max_position_embeddings
    return min(max_model_len or model_len, model_len)
