"""The router's MetricsSink over Ray's metrics export (scraped by Prometheus from each
Ray node's metrics port). One metric object per name, created on first use.

Ray no longer accepts ':' in metric names, so `tandem:x` is exported as `tandem_x` (which
Prometheus shows as `ray_tandem_x`)."""

from __future__ import annotations

from typing import Any

from ray.util import metrics as ray_metrics

from router.metrics import LABELS, LATENCY_BUCKETS, METRICS, Kind, Labels


class RayMetrics:
    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}

    def record(self, name: str, value: float, tags: Labels) -> None:
        metric = self._metrics.get(name) or self._create(name)
        kind = METRICS[name][0]
        if kind == Kind.COUNTER:
            if value > 0:
                metric.inc(value, tags=tags)
        elif kind == Kind.GAUGE:
            metric.set(value, tags=tags)
        else:
            metric.observe(value, tags=tags)

    def _create(self, name: str) -> Any:
        kind, description = METRICS[name]
        exported = export_name(name)
        if kind == Kind.COUNTER:
            metric: ray_metrics.Metric = ray_metrics.Counter(
                exported, description=description, tag_keys=LABELS
            )
        elif kind == Kind.GAUGE:
            metric = ray_metrics.Gauge(exported, description=description, tag_keys=LABELS)
        else:
            metric = ray_metrics.Histogram(
                exported, description=description, boundaries=list(LATENCY_BUCKETS), tag_keys=LABELS
            )
        self._metrics[name] = metric
        return metric


def export_name(name: str) -> str:
    return name.replace(":", "_")
