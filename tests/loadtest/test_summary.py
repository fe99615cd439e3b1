"""The summary's numbers (percentiles, throughput, goodput at the SLO, errors, cost, steps,
adapters), the progress line, requests.csv and the plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtest.measure import Outcome
from loadtest.outputs import write_outputs
from loadtest.plan import PlannedRequest
from loadtest.progress import progress_line
from loadtest.records import RequestRecord
from loadtest.summary import Summary, percentiles, summarize
from loadtest.workload import SLO


def _record(start: float, adapter: str, stage: int, ttft: float, e2e: float, tokens: int,
            error: str | None = None) -> RequestRecord:  # fmt: skip
    planned = PlannedRequest("chat", adapter, adapter, "p", 10, tokens, True, 0.0, 1.0, False)
    gaps = (0.01,) * max(tokens - 1, 0)
    outcome = Outcome(error is None, error, e2e, ttft, gaps, tokens if error is None else 0, 10)
    return RequestRecord(start, stage, planned, outcome)


RECORDS = [
    _record(0.0, "base", 0, 0.1, 1.0, 11),  # tpot 0.09: within the SLO
    _record(1.0, "base", 0, 0.3, 1.3, 11),  # ttft 300 ms > 250: outside
    _record(5.0, "sql", 1, 0.1, 3.1, 11),  # tpot 0.3 > 0.2: outside
    _record(6.0, "sql", 1, 0.1, 0.5, 0, error="HTTP 429: busy"),
]


def _summary() -> Summary:
    return summarize(
        RECORDS,
        workload="w",
        endpoint="http://x",
        duration_s=10.0,
        slo=SLO(ttft_ms=250, tpot_ms=200),
        stage_names=["1 users", "2 users"],
        stage_bounds=[(0.0, 5.0), (5.0, 10.0)],
        gpu_hour_usd=3.6,
        num_gpus=2,
    )


def test_percentiles_in_milliseconds() -> None:
    p = percentiles([i / 1000 for i in range(1, 101)])
    assert (p.count, p.p50, p.p99) == (100, pytest.approx(50.5), pytest.approx(99.01))
    assert percentiles([]).p50 is None


def test_summary_numbers() -> None:
    s = _summary()
    assert (s.requests, s.failures, s.error_rate) == (4, 1, 0.25)
    assert s.errors == {"HTTP 429: busy": 1}
    assert s.throughput.output_tokens_per_s == pytest.approx(3.3)
    assert s.throughput.requests_per_s == pytest.approx(0.3)
    assert s.goodput.requests_per_s == pytest.approx(0.1) and s.goodput.share == 0.25
    assert s.latency.ttft_ms.count == 3 and s.latency.e2e_ms.p50 == pytest.approx(1300)
    assert s.latency.itl_ms.count == 30
    # 2 GPUs x $3.6/h x 10 s = $0.02 for 33 tokens
    assert s.cost.usd_per_million_output_tokens == pytest.approx(0.02 / 33 * 1e6)
    assert [(st.name, st.requests, st.failures) for st in s.stages] == [
        ("1 users", 2, 0),
        ("2 users", 2, 1),
    ]
    assert s.stages[0].output_tokens_per_s == pytest.approx(22 / 5)
    assert [(a.name, a.requests, a.error_rate) for a in s.adapters] == [
        ("base", 2, 0.0),
        ("sql", 2, 0.5),
    ]


def test_outputs_written(tmp_path: Path) -> None:
    summary = write_outputs(tmp_path, RECORDS, _summary(), 10.0)
    for name in ("summary.json", "requests.csv", "over_time.png", "throughput_vs_latency.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "over_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary.files["summary_json"] == str(tmp_path / "summary.json")
    rows = list(csv.DictReader((tmp_path / "requests.csv").open()))
    assert [r["ok"] for r in rows] == ["True", "True", "True", "False"]
    assert rows[3]["error"] == "HTTP 429: busy"


def test_progress_line() -> None:
    line = progress_line(7.0, 20.0, 3, RECORDS)
    assert line.startswith("[    7/20 s] users   3 | requests 4 failed 1")
    assert "tok/s" in line and "TTFT p50 100 ms" in line
