"""Metric names (vLLM style, `tandem:` prefix) and the sink the router records into.

The router only calls a `MetricsSink`; deployments/metrics.py implements it with Ray's
metrics export (Prometheus), tests with `RecordingMetrics`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


LABELS = ("model", "adapter")

# name -> (kind, description)
METRICS: dict[str, tuple[Kind, str]] = {
    "tandem:num_requests_running": (Kind.GAUGE, "Requests dispatched to replicas (router)."),
    "tandem:num_requests_waiting": (Kind.GAUGE, "Requests queued in the router's admission."),
    "tandem:engine_num_requests_running": (Kind.GAUGE, "Requests running in a replica."),
    "tandem:engine_num_requests_waiting": (Kind.GAUGE, "Requests waiting in a replica."),
    "tandem:kv_cache_usage_perc": (Kind.GAUGE, "Fraction of KV cache blocks in use (0-1)."),
    "tandem:prefix_cache_hit_rate": (Kind.GAUGE, "Prefix cache hit rate of a replica."),
    "tandem:num_preemptions": (Kind.GAUGE, "Preemptions so far in a replica."),
    "tandem:time_to_first_token_seconds": (Kind.HISTOGRAM, "Time to the first output token."),
    "tandem:inter_token_latency_seconds": (Kind.HISTOGRAM, "Time between output tokens."),
    "tandem:e2e_request_latency_seconds": (Kind.HISTOGRAM, "Time from arrival to finish."),
    "tandem:prompt_tokens_total": (Kind.COUNTER, "Prompt tokens processed."),
    "tandem:generation_tokens_total": (Kind.COUNTER, "Output tokens generated."),
    "tandem:request_success_total": (Kind.COUNTER, "Requests finished, by finish reason."),
    "tandem:request_rejected_total": (Kind.COUNTER, "Requests refused by admission (429/503)."),
    "tandem:request_failure_total": (
        Kind.COUNTER,
        "Requests that failed after streaming began (sent as an error chunk).",
    ),
    "tandem:spec_decode_num_draft_tokens_total": (Kind.COUNTER, "Draft tokens proposed."),
    "tandem:spec_decode_num_accepted_tokens_total": (Kind.COUNTER, "Draft tokens accepted."),
    "tandem:lora_loads_total": (Kind.COUNTER, "LoRA adapter loads requested."),
}

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = dict[str, str]


def labels(model: str, adapter: str | None) -> Labels:
    return {"model": model, "adapter": adapter or ""}


class MetricsSink(Protocol):
    def record(self, name: str, value: float, tags: Labels) -> None:
        """Add to a counter, set a gauge or observe a histogram (by the name's kind)."""


class NullMetrics:
    def record(self, name: str, value: float, tags: Labels) -> None:
        assert name in METRICS, f"unknown metric {name}"


@dataclass
class RecordingMetrics:
    """Keeps every record in memory; for tests."""

    values: dict[str, list[tuple[float, Labels]]] = field(default_factory=lambda: defaultdict(list))

    def record(self, name: str, value: float, tags: Labels) -> None:
        assert name in METRICS, f"unknown metric {name}"
        self.values[name].append((value, dict(tags)))

    def total(self, name: str) -> float:
        return sum(v for v, _ in self.values[name])


class RequestTimer:
    """TTFT and inter-token latency of one request, recorded as its tokens arrive."""

    def __init__(self, sink: MetricsSink, tags: Labels, now: float | None = None) -> None:
        self._sink = sink
        self._tags = tags
        self._start = time.monotonic() if now is None else now
        self._last: float | None = None

    def on_tokens(self, num_tokens: int, now: float | None = None) -> None:
        if num_tokens == 0:
            return
        now = time.monotonic() if now is None else now
        if self._last is None:
            self._sink.record("tandem:time_to_first_token_seconds", now - self._start, self._tags)
        else:
            per_token = (now - self._last) / num_tokens
            self._sink.record("tandem:inter_token_latency_seconds", per_token, self._tags)
        self._last = now

    def on_finish(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._sink.record("tandem:e2e_request_latency_seconds", now - self._start, self._tags)
