"""Speculative routing: per request, decode plainly, with a draft on the same replica
(colocated) or with a DraftServer elsewhere (remote).

The policy is a preferred mode (from config, or load-based when "auto") and a list of small
rules; each rule may veto speculation with a reason. Compose rules instead of subclassing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from router.load import LoadSnapshot
from workers.protocol import GenerateRequest, SpeculationMode

ConfiguredMode = Literal["off", "colocated", "remote", "ngram", "auto"]


@dataclass(frozen=True)
class SpeculationDecision:
    mode: SpeculationMode
    reason: str


class Rule(Protocol):
    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        """A reason to decode this request plainly, or None."""


@dataclass(frozen=True)
class NoBeamSearch:
    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        return "beam search decodes plainly" if request.sampling.use_beam_search else None


@dataclass(frozen=True)
class SingleSequence:
    """The engine drafts for one sequence per request; n > 1 decodes plainly."""

    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        return f"n={request.sampling.n} decodes plainly" if request.sampling.n > 1 else None


@dataclass(frozen=True)
class MaxTemperature:
    """Hot sampling accepts few draft tokens; the draft's work would be wasted."""

    limit: float = 1.0

    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        if request.sampling.temperature > self.limit:
            return f"temperature {request.sampling.temperature} > {self.limit}"
        return None


@dataclass(frozen=True)
class NoAdapters:
    """The draft model was distilled from the base model, not from its adapters."""

    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        return f"adapter {request.adapter!r} has no draft" if request.adapter else None


@dataclass(frozen=True)
class MaxLoad:
    """Speculation trades spare compute for latency; a full batch has none to spare."""

    max_kv_usage: float = 0.85
    max_batch_occupancy: float = 0.75

    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        if load.kv_usage > self.max_kv_usage:
            return f"KV usage {load.kv_usage:.2f} > {self.max_kv_usage}"
        if load.batch_occupancy > self.max_batch_occupancy:
            return f"batch occupancy {load.batch_occupancy:.2f} > {self.max_batch_occupancy}"
        return None


@dataclass(frozen=True)
class MinAcceptance:
    """Stop drafting where drafts are mostly rejected (unknown rates do not veto)."""

    min_rate: float = 0.3

    def veto(self, request: GenerateRequest, load: LoadSnapshot) -> str | None:
        rate = load.acceptance_rate
        if rate is not None and rate < self.min_rate:
            return f"observed acceptance {rate:.2f} < {self.min_rate}"
        return None


def default_rules() -> tuple[Rule, ...]:
    return (
        NoBeamSearch(),
        SingleSequence(),
        MaxTemperature(),
        NoAdapters(),
        MaxLoad(),
        MinAcceptance(),
    )


ALL_PROPOSERS = frozenset(
    {SpeculationMode.COLOCATED, SpeculationMode.REMOTE, SpeculationMode.NGRAM}
)


@dataclass(frozen=True)
class SpeculationPolicy:
    """mode "auto": colocated while the cluster is lightly loaded (the draft runs in the
    replica's idle compute), remote above `remote_above_occupancy` (the draft's compute moves
    to the DraftServer); either falls back to the other when only one is deployed, and the
    rules still apply. `available`: the proposers the deployment has."""

    mode: ConfiguredMode = "off"
    rules: Sequence[Rule] = field(default_factory=default_rules)
    remote_above_occupancy: float = 0.25
    available: frozenset[SpeculationMode] = ALL_PROPOSERS

    def decide(self, request: GenerateRequest, load: LoadSnapshot) -> SpeculationDecision:
        if self.mode == "off":
            return SpeculationDecision(SpeculationMode.NONE, "speculation is off")
        for rule in self.rules:
            reason = rule.veto(request, load)
            if reason is not None:
                return SpeculationDecision(SpeculationMode.NONE, reason)
        preferred = self._preferred(load)
        if preferred not in self.available:
            return SpeculationDecision(SpeculationMode.NONE, f"no {preferred} proposer deployed")
        return SpeculationDecision(preferred, f"{self.mode} mode")

    def _preferred(self, load: LoadSnapshot) -> SpeculationMode:
        if self.mode != "auto":
            return SpeculationMode(self.mode)
        busy = load.batch_occupancy > self.remote_above_occupancy
        order = [SpeculationMode.REMOTE, SpeculationMode.COLOCATED]
        if not busy:
            order.reverse()
        return next((m for m in order if m in self.available), order[0])
