"""The engine's own outputs, in-process: what answers through HTTP must equal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.factories import make_engine
from workers.config import LoRAConfig
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams


def engine_greedy(
    model_dir: Path,
    prompt: Sequence[int],
    max_tokens: int,
    adapter_root: Path | None = None,
    adapter: str | None = None,
) -> list[int]:
    lora = LoRAConfig(adapter_roots=(str(adapter_root),)) if adapter_root else None
    engine = make_engine(model_dir, lora=lora)
    if adapter is not None:
        assert adapter_root is not None
        engine.load_adapter(adapter, str(adapter_root / adapter))
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    request = GenerateRequest("oracle", tuple(prompt), sampling, adapter)
    return engine.generate([request])["oracle"][0]
