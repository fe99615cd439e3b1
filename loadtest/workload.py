"""The workload description (a YAML file, validated here): what requests look like and how
load arrives. See loadtest/workloads/*.yaml for examples; every field has a description."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadtest.distributions import Distribution, LogNormal
from loadtest.shapes import Constant, LoadShape

BASE = "base"  # the adapter-mix key that means "the base model, no adapter"


class SLO(BaseModel):
    """A request counts towards goodput when it meets every limit that is set."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(2000, gt=0, description="Most time to first token.")
    tpot_ms: float | None = Field(200, gt=0, description="Most time per output token.")
    e2e_ms: float | None = Field(None, gt=0, description="Most end-to-end latency.")


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampled_share: float = Field(
        0.5, ge=0, le=1, description="Share of requests that sample; the rest are greedy."
    )
    temperature: float = Field(0.8, gt=0, description="Temperature of sampled requests.")
    top_p: float = Field(0.95, gt=0, le=1, description="top_p of sampled requests.")


class Speculation(BaseModel):
    """With `body_field` set, requests get `{body_field: true}` on the speculative share and
    `{body_field: false}` on the rest. Tandem's field is `speculative`: false decodes plainly,
    true lets the router speculate where its policy allows (`router.speculation` in
    config.yaml). Without `body_field` the share is only recorded (requests.csv), for
    engines with no such switch."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(0.0, ge=0, le=1, description="Share of requests asked to speculate.")
    body_field: str | None = Field(
        None, description="Request body field that switches speculation (None: no-op)."
    )


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("workload", description="Shown in the summary and plots.")
    model: str | None = Field(
        None, description="Base model name; None asks the server's /v1/models."
    )
    prompt_tokens: Distribution = Field(
        default_factory=lambda: LogNormal(kind="lognormal", median=64, sigma=0.5, max=512),
        description="Prompt length in tokens.",
    )
    output_tokens: Distribution = Field(
        default_factory=lambda: LogNormal(kind="lognormal", median=32, sigma=0.5, max=256),
        description="Output length in tokens (sent as max_tokens).",
    )
    ignore_eos: bool = Field(
        True, description="Send ignore_eos so outputs have the sampled length (vLLM extra)."
    )
    endpoints: dict[str, float] = Field(
        default_factory=lambda: {"chat": 1.0, "completions": 1.0},
        description="Weights of 'chat' (/v1/chat/completions) and 'completions'.",
    )
    stream_share: float = Field(
        1.0, ge=0, le=1, description="Share of streamed requests (only these measure TTFT)."
    )
    adapters: dict[str, float] = Field(
        default_factory=lambda: {BASE: 1.0},
        description=f"Weights of the models to call: '{BASE}' or a LoRA adapter's name.",
    )
    sampling: Sampling = Field(default_factory=Sampling, description="Sampled vs greedy.")
    speculation: Speculation = Field(default_factory=Speculation, description="Speculative share.")
    shape: LoadShape = Field(
        default_factory=lambda: Constant(kind="constant", users=4, duration_s=60),
        description="How load arrives over time.",
    )
    think_time_s: float = Field(
        0.0, ge=0, description="Pause of a closed-loop user between requests."
    )
    slo: SLO = Field(default_factory=SLO, description="Latency limits for goodput.")
    request_timeout_s: float = Field(300, gt=0, description="A request slower than this fails.")
    seed: int = Field(0, description="Seeds prompts and every random choice.")

    @model_validator(mode="after")
    def _weights(self) -> Workload:
        unknown = set(self.endpoints) - {"chat", "completions"}
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; use 'chat' or 'completions'")
        for name, weights in (("endpoints", self.endpoints), ("adapters", self.adapters)):
            if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
                raise ValueError(f"{name} needs non-negative weights with a positive sum")
        return self


def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload file; errors name the file and the bad field."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read workload {path}: {e}") from e
    try:
        return Workload.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(f"workload {path} is invalid:\n{e}") from e
