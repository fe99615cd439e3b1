"""The Router's part of config.yaml `args` (pydantic, every field described)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from router.speculation import (
    MaxLoad,
    MaxTemperature,
    MinAcceptance,
    NoAdapters,
    NoBeamSearch,
    Rule,
    SingleSequence,
    SpeculationMode,
    SpeculationPolicy,
)


class SpeculationArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "colocated", "remote", "ngram", "auto"] = Field(
        "off",
        description="off; colocated / remote / ngram for every eligible request; auto: "
        "colocated when lightly loaded, remote when busier.",
    )
    max_temperature: float = Field(1.0, description="Hotter sampling decodes plainly.")
    allow_adapters: bool = Field(False, description="Speculate for adapter requests too.")
    max_kv_usage: float = Field(0.85, description="Above this KV usage, decode plainly.")
    max_batch_occupancy: float = Field(
        0.75, description="Above this share of batch slots in use, decode plainly."
    )
    min_acceptance_rate: float = Field(
        0.3, description="Below this observed draft acceptance, decode plainly."
    )
    remote_above_occupancy: float = Field(
        0.25, description="auto mode: above this batch occupancy, use the remote draft."
    )

    def policy(self, available: frozenset[SpeculationMode]) -> SpeculationPolicy:
        rules: list[Rule] = [NoBeamSearch(), SingleSequence(), MaxTemperature(self.max_temperature)]
        if not self.allow_adapters:
            rules.append(NoAdapters())
        rules += [
            MaxLoad(self.max_kv_usage, self.max_batch_occupancy),
            MinAcceptance(self.min_acceptance_rate),
        ]
        return SpeculationPolicy(
            mode=self.mode,
            rules=tuple(rules),
            remote_above_occupancy=self.remote_above_occupancy,
            available=available,
        )


class RouterArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys; empty (and no env) = no auth."
    )
    api_keys_env: str | None = Field(
        "TANDEM_API_KEYS", description="Env var with more comma-separated API keys."
    )
    max_running: int | None = Field(
        None,
        description="Requests dispatched to replicas at once; default replicas x max_num_seqs.",
    )
    max_waiting: int = Field(256, description="Requests queued in the router beyond that.")
    retry_after_s: float = Field(1.0, description="Retry-After sent with 429/503.")
    speculation: SpeculationArgs = Field(
        default_factory=SpeculationArgs, description="Speculative routing policy."
    )
    ray_actor_options: dict = Field(
        default_factory=lambda: {"num_cpus": 0.5}, description="Ray options of the Router."
    )


class RouterSettings(RouterArgs):
    """RouterArgs plus what the app builder derived; passed to the Router deployment."""

    model_name: str = Field(description="The base model's served name.")
    tokenizer_dir: str = Field(description="Directory AutoTokenizer loads from.")
    max_model_len: int = Field(description="The engine's context length.")
    vocab_size: int = Field(description="The model's vocabulary size (token ids below it).")
    max_sequences: int = (
        Field(
            description="The most sequences one request may ask for (n, best_of, beam_width): "
            "the engine's max_num_seqs."
        ),
    )
    batch_slots: int = Field(description="Replicas x max_num_seqs.")
    proposers: list[SpeculationMode] = Field(
        default_factory=list, description="Speculation modes the replicas can serve."
    )
    adapter_roots: list[str] = Field(
        default_factory=list, description="Absolute adapter roots; empty: no adapters."
    )
    preload_adapters: dict[str, str] = Field(
        default_factory=dict, description="Adapters in the desired set from the start."
    )

    def resolved_api_keys(self) -> list[str]:
        keys = list(self.api_keys)
        if self.api_keys_env:
            keys += [k.strip() for k in os.environ.get(self.api_keys_env, "").split(",")]
        return [k for k in keys if k]

    def speculation_policy(self) -> SpeculationPolicy:
        return self.speculation.policy(frozenset(self.proposers))
