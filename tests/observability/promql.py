"""Dashboard queries as Prometheus runs them: Grafana's variables replaced by what "All" and
the built-in intervals mean."""

from __future__ import annotations

import re

ALL = ".*"


def expand(expr: str, rate_interval: str = "1m") -> str:
    expanded = expr.replace("$__rate_interval", rate_interval)
    expanded = expanded.replace("$model", ALL).replace("$application", ALL)
    leftover = re.findall(r"\$\w+", expanded)
    assert not leftover, f"unexpanded Grafana variables {leftover} in {expr}"
    return expanded


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(ray_[a-z0-9_]+)\b", expr))
