"""Hand-off types between the router and a replica: requests in, token deltas and stats out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from adapters.info import AdapterInfo
from workers.records import record
from workers.sampling_params import SamplingParams

__all__ = [
    "AdapterInfo",
    "FinishReason",
    "GenerateRequest",
    "ReplicaStats",
    "SpeculationMode",
    "TokenDelta",
    "TokenLogprob",
]


class SpeculationMode(StrEnum):
    """How a request is decoded; the router picks one per request."""

    NONE = "none"  # plain decoding
    COLOCATED = "colocated"  # a draft model in the same replica
    REMOTE = "remote"  # proposals from a DraftServer elsewhere
    NGRAM = "ngram"  # prompt lookup, no draft model


class FinishReason(StrEnum):
    STOP = "stop"  # EOS or a stop token
    LENGTH = "length"  # max_tokens or the model's context
    ABORT = "abort"  # cancelled by the caller
    ERROR = "error"  # failed in the engine; TokenDelta.error says why (the others go on)


@dataclass(frozen=True)
class GenerateRequest:
    """One generation request, already tokenized and validated by the router."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    adapter: str | None = None
    speculation: SpeculationMode = SpeculationMode.NONE
    priority: int = 0  # lower runs first; FCFS within a priority
    arrival_time: float = field(default_factory=time.monotonic)


@record
class TokenLogprob:
    """The chosen token's log-probability and the top alternatives, best first."""

    token_id: int
    logprob: float | None  # None: the prompt's first token, which nothing predicts
    top: tuple[tuple[int, float], ...] = ()


@record
class TokenDelta:
    """New output of one sample (`index` < n) of a request since the previous delta."""

    request_id: str
    index: int
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_generated_tokens: int = 0
    num_drafted_tokens: int = 0
    num_accepted_tokens: int = 0
    error: str | None = None  # with FinishReason.ERROR: a message safe to show the client
    # With SamplingParams.prompt_logprobs, on each sample's first delta: one entry per
    # prompt token after the first (the first has no context to be predicted from).
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class ReplicaStats:
    """What the router needs to choose a replica."""

    num_free_blocks: int
    num_total_blocks: int
    num_running: int
    num_waiting: int
    prefix_cache_hit_rate: float
    resident_adapters: tuple[str, ...] = ()
    num_preemptions: int = 0
    spec_acceptance_rate: float = 0.0

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.num_free_blocks / max(self.num_total_blocks, 1)
