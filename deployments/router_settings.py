"""The Router's part of config.yaml `args` (pydantic, every field described)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from router.edge import BodyLimits
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


class EdgeArgs(BaseModel):
    """Limits on what a client may send, enforced before any work (router/edge.py). Serve's
    HTTP proxy starts before any app, so it reads its copy from the environment
    (`from_env`; deployments/proxy_edge.py); these fields set the Router's own."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest request body accepted; larger gets 413."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="The whole body must arrive within this; else 408."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must finish sending a request's headers within this of "
        "opening (or of its previous response); else it is closed. Proxy only.",
    )

    ENV: ClassVar[dict[str, str]] = {
        "max_body_bytes": "TANDEM_MAX_BODY_BYTES",
        "body_timeout_s": "TANDEM_BODY_TIMEOUT_S",
        "header_timeout_s": "TANDEM_HEADER_TIMEOUT_S",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EdgeArgs:
        return cls.model_validate({f: environ[v] for f, v in cls.ENV.items() if v in environ})

    def body_limits(self) -> BodyLimits:
        return BodyLimits(self.max_body_bytes, self.body_timeout_s)


class RouterArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys; empty (and no env) = no auth."
    )
    api_keys_env: str | None = Field(
        "TANDEM_API_KEYS", description="Env var with more comma-separated API keys."
    )
    num_replicas: int = Field(
        1,
        ge=1,
        description="Router replicas (the HTTP front end; each tokenizes, admits and streams "
        "its share of the requests). Adapter state lives in the AdapterControl deployment, "
        "so any number share it.",
    )
    max_running: int | None = Field(
        None,
        description="Requests dispatched to replicas at once, cluster-wide; default LLM "
        "replicas x max_num_seqs. Each Router replica admits max_running / num_replicas "
        "(rounded up).",
    )
    max_waiting: int = Field(
        256,
        description="Requests queued in the Routers beyond that, cluster-wide; each Router "
        "replica queues max_waiting / num_replicas (rounded up), then answers 429.",
    )
    retry_after_s: float = Field(1.0, description="Retry-After sent with 429/503.")
    speculation: SpeculationArgs = Field(
        default_factory=SpeculationArgs, description="Speculative routing policy."
    )
    shutdown_timeout_s: float = Field(
        30.0,
        gt=0,
        description="On shutdown or redeploy, streams in flight get this long to finish; "
        "what is still running then ends with an error event.",
    )
    edge: EdgeArgs = Field(
        default_factory=EdgeArgs, description="Request size and read-time limits."
    )
    ray_actor_options: dict = Field(
        default_factory=lambda: {"num_cpus": 0.5}, description="Ray options of the Router."
    )


class RouterSettings(RouterArgs):
    """RouterArgs plus what the app builder derived; passed to the Router deployment.
    max_running and max_waiting here are one Router replica's share."""

    max_running: int = Field(
        description="Requests this Router replica dispatches at once (its share of RouterArgs'"
        " max_running, or of LLM replicas x max_num_seqs)."
    )
    model_name: str = Field(description="The base model's served name.")
    tokenizer_dir: str = Field(description="Directory AutoTokenizer loads from.")
    max_model_len: int = Field(description="The engine's context length.")
    vocab_size: int = Field(description="The model's vocabulary size (token ids below it).")
    max_sequences: int = Field(
        description="The most sequences one request may ask for (n, best_of, beam_width): "
        "the engine's max_num_seqs."
    )
    batch_slots: int = Field(
        description="This Router replica's share of LLM replicas x max_num_seqs."
    )
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
