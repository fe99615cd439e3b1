"""config.yaml's `llm.engine` settings, derived from the engine's dataclasses: every engine
option is reachable, unknown keys and bad values are refused when the settings parse."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from deployments.app import AppArgs
from deployments.engine_settings import (
    FLATTENED,
    SET_ELSEWHERE,
    EngineSettings,
    LoRASettings,
    SpecSettings,
)
from workers.config import EngineConfig, LoRAConfig, Quantization, SpecConfig

ROOT = Path(__file__).resolve().parents[2]
SECTIONS: dict[str, type[BaseModel]] = {"lora": LoRASettings, "spec": SpecSettings}


def options(cls: type, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf option of a config dataclass, by path, with its annotation."""
    leaves: dict[tuple[str, ...], Any] = {}
    for name, annotation in get_type_hints(cls).items():
        nested = [
            t
            for t in (annotation, *get_args(annotation))
            if isinstance(t, type) and dataclasses.is_dataclass(t)
        ]
        if nested:
            leaves.update(options(nested[0], (*prefix, name)))
        else:
            leaves[(*prefix, name)] = annotation
    return leaves


# The app's `model` and `adapters.roots`, not `engine:`.
ELSEWHERE = {("model",), ("lora", "adapter_roots")}


def settings_path(path: tuple[str, ...]) -> tuple[str, ...]:
    """Where config.yaml's `engine:` holds an EngineConfig option: cache and scheduler
    options at the top, lora and spec in their sections."""
    return path[1:] if path[0] in FLATTENED else path


def other_value(annotation: Any, default: Any) -> Any:
    """A valid value unlike `default`, for a field of this annotation."""
    kind = annotation
    if get_origin(annotation) in (Union, types.UnionType):  # X | None: an X
        kind = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(kind) is Literal:
        return get_args(kind)[0]
    if kind is bool:
        return True if default is None else not default
    if kind is int:
        return 7 if default is None else default + 1
    if kind is float:
        return default / 2
    if kind is str:
        return "some/dir" if default is None else f"{default}-set"
    raise AssertionError(f"no test value for {annotation!r}")


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    return {path[0]: nest(path[1:], value) if len(path) > 1 else value}


def read(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def defaults(path: tuple[str, ...]) -> Any:
    return read(EngineConfig("m", lora=LoRAConfig(), spec=SpecConfig()), path)


def test_a_config_yaml_engine_reaches_the_engine_config() -> None:
    args = yaml.safe_load(
        """
        model: models/m
        llm:
          engine:
            device: cuda
            dtype: bfloat16
            quantization: nf4
            cuda_graphs: false
            async_scheduling: true
            memory_fraction: 0.5
            max_num_seqs: 8
            lora: {max_loras: 2, max_cpu_loras: 4}
            spec: {draft_model: /models/draft, num_speculative_tokens: 3, ngram_max: 3}
        """
    )
    engine = AppArgs.model_validate(args).llm.engine
    config = engine.engine_config("/models/m", ("/adapters",))
    assert (config.model, config.device, config.dtype) == ("/models/m", "cuda", "bfloat16")
    assert (config.quantization, config.cuda_graphs, config.async_scheduling) == (
        "nf4",
        False,
        True,
    )
    assert config.cache.memory_fraction == 0.5 and config.scheduler.max_num_seqs == 8
    assert config.lora is not None and config.lora.adapter_roots == ("/adapters",)
    assert (config.lora.max_loras, config.lora.max_cpu_loras) == (2, 4)
    assert config.spec is not None and config.spec.draft_model == "/models/draft"
    assert (config.spec.num_speculative_tokens, config.spec.ngram_max) == (3, 3)


def test_defaults_are_the_engines_and_survive_the_dict_a_replica_gets() -> None:
    settings = EngineSettings()
    assert settings.engine_config("m") == EngineConfig("m")
    # build_app hands replicas `model_dump()`; they parse it again
    full = EngineSettings.model_validate({"lora": {}, "spec": {"draft_model": "/d"}})
    assert EngineSettings.model_validate(full.model_dump()) == full


def test_every_engine_option_is_a_setting_or_set_elsewhere() -> None:
    settable: set[tuple[str, ...]] = {
        (name, *sub)
        for name in EngineSettings.model_fields
        for sub in ([(s,) for s in SECTIONS[name].model_fields] if name in SECTIONS else [()])
    }
    engine_options = {settings_path(p) for p in options(EngineConfig)}
    assert settable == engine_options - ELSEWHERE
    declared: set[tuple[str, ...]] = {(n,) for n in SET_ELSEWHERE[EngineConfig]}
    declared |= {("lora", n) for n in SET_ELSEWHERE[LoRAConfig]}
    assert declared == ELSEWHERE


@pytest.mark.parametrize("path", sorted(set(options(EngineConfig)) - ELSEWHERE), ids=".".join)
def test_each_engine_option_set_in_the_settings_arrives(path: tuple[str, ...]) -> None:
    annotation = options(EngineConfig)[path]
    value = other_value(annotation, defaults(path))
    settings = EngineSettings.model_validate(nest(settings_path(path), value))
    arrived = read(settings.engine_config("m"), path)
    assert arrived != defaults(path)
    assert arrived == value or (isinstance(value, str) and arrived.endswith(value))


def test_quantization_choices_are_the_engines() -> None:
    from workers.models.quantize import QUANTIZATIONS

    assert get_args(Quantization) == QUANTIZATIONS


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"cuda_graph": True}, "cuda_graph\n  Extra inputs are not permitted"),
        ({"lora": {"rank": 8}}, "lora.rank\n  Extra inputs are not permitted"),
        ({"spec": {"adapter_roots": []}}, "spec.adapter_roots\n  Extra inputs"),
        ({"lora": {"adapter_roots": ["/x"]}}, "lora.adapter_roots\n  Extra inputs"),
        ({"model": "/m"}, "model\n  Extra inputs are not permitted"),
        ({"quantization": "fp8"}, "quantization\n  Input should be 'int8' or 'nf4'"),
        ({"async_scheduling": "sometimes"}, "async_scheduling\n  Input should be a valid bool"),
        ({"block_size": 0}, "block_size must be >= 1, got 0"),
        ({"max_num_seqs": 0}, "max_num_seqs and max_num_batched_tokens must be >= 1"),
        ({"lora": {"max_loras": 4, "max_cpu_loras": 2}}, "lora\n  Value error, max_cpu_loras"),
        ({"spec": {"num_speculative_tokens": 17}}, "num_speculative_tokens must be in [1, 16]"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused_clearly(
    engine: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        AppArgs.model_validate({"llm": {"engine": engine}})
    assert message in str(refused.value)


@pytest.mark.parametrize("name", ["config.yaml", "config.tiny.yaml", "config.gpu.yaml"])
def test_the_repo_configs_engines_convert(name: str) -> None:
    (app,) = yaml.safe_load((ROOT / name).read_text())["applications"]
    args = AppArgs.model_validate(app["args"])
    config = args.llm.engine.engine_config("m", ("/adapters",))
    assert config.lora is not None and config.spec is not None
    args.draft.engine.engine_config("m")
