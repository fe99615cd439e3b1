"""transformers' compiled static-cache decoding, set up the way the installed version documents.

`generate(..., cache_implementation="static")` allocates a fixed-shape KV cache (StaticCache);
compiling the decode forward with `mode="reduce-overhead"` (inductor kernels replayed as CUDA
graphs) and `fullgraph=True` is the fast path transformers' optimization guide gives. Two
recipes, by version:

- "auto": newer versions (CompileConfig and GenerationConfig.compile_config present) compile
  the decode forward inside `generate` when the cache is static, prefill left eager; the
  options come in `compile_config=CompileConfig(...)`. On CPU `generate` compiles only when
  the config's `_compile_all_devices` is set.
- "forward": the older recipe, `model.forward = torch.compile(model.forward, ...)`, with
  `generate`'s own compile switched off (`disable_compile`) where it has one, so nothing is
  compiled twice. "auto" falls back to it when the installed version lacks CompileConfig.
- "none": the static cache, eager (the CPU smoke run where inductor cannot build).
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import torch
import transformers
from transformers import GenerationConfig

HOWS = ("auto", "forward", "none")
MODE = "reduce-overhead"


@dataclasses.dataclass
class CompiledPath:
    """What `generate` needs for the chosen path, and a description of it for the report."""

    how: str  # the path taken: "auto", "forward" or "none"
    fullgraph: bool
    kwargs: dict[str, Any]

    def describe(self) -> str:
        if self.how == "auto":
            return f"generate compile_config (mode={MODE}, fullgraph={self.fullgraph})"
        if self.how == "forward":
            return f"torch.compile(model.forward, mode={MODE}, fullgraph={self.fullgraph})"
        return "eager (static cache, not compiled)"


def generation_fields() -> set[str]:
    return set(vars(GenerationConfig()))


def has_generate_compile() -> bool:
    return hasattr(transformers, "CompileConfig") and "compile_config" in generation_fields()


def set_up(model: Any, how: str, fullgraph: bool = True) -> CompiledPath:
    """Compile `model` for decoding as `how` says; the kwargs go to every `generate` call.
    One CompileConfig is made per path and reused, so later calls find the compiled code."""
    if how not in HOWS:
        raise ValueError(f"compile path {how!r} is not one of {HOWS}")
    kwargs: dict[str, Any] = {"cache_implementation": "static", "do_sample": False}
    if how == "auto" and has_generate_compile():
        config: Any = transformers.CompileConfig(fullgraph=fullgraph, mode=MODE)
        if model.device.type == "cpu":
            config._compile_all_devices = True  # else generate skips compiling on CPU
        return CompiledPath("auto", fullgraph, {**kwargs, "compile_config": config})
    if "disable_compile" in generation_fields():
        kwargs["disable_compile"] = True
    if how == "none":
        return CompiledPath("none", fullgraph, kwargs)
    model.forward = torch.compile(model.forward, mode=MODE, fullgraph=fullgraph)
    return CompiledPath("forward", fullgraph, kwargs)


def tear_down(model: Any) -> None:
    """Back to the eager model as loaded: the compiled forward dropped, dynamo's caches
    cleared, generate's static-cache size forgotten."""
    if "forward" in vars(model):
        del model.forward  # the class's forward again
    if hasattr(model, "_compiled_call"):
        del model._compiled_call  # generate's cached compiled __call__ (the "auto" path)
    if hasattr(model, "_previous_max_cache_length"):
        del model._previous_max_cache_length  # generate's memory of the largest static cache
    torch._dynamo.reset()  # CUDA-graph trees too
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def compiled_in_generate(model: Any, path: CompiledPath) -> bool:
    """Whether decoding actually ran compiled code (generate may decline to compile, e.g. on
    CPU in a version without `_compile_all_devices`)."""
    if path.how == "auto":
        return hasattr(model, "_compiled_call")
    return path.how == "forward"
