"""PNG plots of a run (matplotlib, no display needed): latency percentiles and throughput over
time, and throughput against p99 latency across the load steps."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np

from loadtest.records import RequestRecord
from loadtest.summary import StageStats

PERCENTILES = (50, 95, 99)


def plot_over_time(
    records: Sequence[RequestRecord], duration_s: float, path: Path, window_s: float | None = None
) -> Path:
    """Three panels on a shared time axis: TTFT and end-to-end percentiles per window (by the
    time requests finished) and output tokens/s with requests/s."""
    window = window_s or max(1.0, duration_s / 30)
    edges = np.arange(0.0, max(duration_s, window) + window, window)
    mids = (edges[:-1] + edges[1:]) / 2
    ok = [r for r in records if r.outcome.ok]
    fig, (ax_ttft, ax_e2e, ax_tput) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ttft = [(r.end_s, r.outcome.ttft_s) for r in ok if r.outcome.ttft_s is not None]
    _percentile_lines(ax_ttft, ttft, edges, mids, "TTFT (ms)")
    _percentile_lines(ax_e2e, [(r.end_s, r.outcome.e2e_s) for r in ok], edges, mids, "e2e (ms)")
    ends = np.array([r.end_s for r in ok])
    tokens = np.array([r.outcome.output_tokens for r in ok], dtype=float)
    token_rate = np.histogram(ends, bins=edges, weights=tokens)[0] / window
    request_rate = np.histogram(ends, bins=edges)[0] / window
    ax_tput.plot(mids, token_rate, color="tab:green", label="output tokens/s")
    ax_tput.set_ylabel("output tokens/s")
    ax_req = ax_tput.twinx()
    ax_req.plot(mids, request_rate, color="tab:gray", linestyle="--", label="requests/s")
    ax_req.set_ylabel("requests/s")
    ax_tput.set_xlabel("time since start (s)")
    ax_tput.legend(loc="upper left")
    ax_req.legend(loc="upper right")
    fig.suptitle("Latency percentiles and throughput over time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_throughput_vs_latency(stages: Sequence[StageStats], path: Path) -> Path:
    """One point per load step: output tokens/s against p99 TTFT and p99 e2e latency."""
    fig, ax = plt.subplots(figsize=(7, 5))
    x = [s.output_tokens_per_s for s in stages]
    for metric, marker in (("ttft_ms", "o"), ("e2e_ms", "s")):
        y = [getattr(s, metric).p99 for s in stages]
        points = [(a, b) for a, b in zip(x, y, strict=True) if b is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=f"p99 {metric[:-3]}")
    for s in stages:
        if s.e2e_ms.p99 is not None:
            ax.annotate(
                s.name,
                (s.output_tokens_per_s, s.e2e_ms.p99),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("Throughput vs p99 latency across load steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _percentile_lines(
    ax: plt.Axes,
    samples: Sequence[tuple[float, float]],
    edges: np.ndarray,
    mids: np.ndarray,
    label: str,
) -> None:
    times = np.array([t for t, _ in samples])
    values = np.array([v for _, v in samples]) * 1000.0
    for p in PERCENTILES:
        line = []
        for lo, hi in itertools.pairwise(edges):
            window = values[(times >= lo) & (times < hi)] if len(times) else values
            line.append(np.percentile(window, p) if len(window) else np.nan)
        ax.plot(mids, line, marker=".", label=f"p{p}")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
