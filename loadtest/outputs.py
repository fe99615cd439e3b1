"""Everything a run writes after the load phase: requests.csv, summary.json and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest.plots import plot_over_time, plot_throughput_vs_latency
from loadtest.records import RequestRecord, write_requests_csv
from loadtest.summary import Summary

LOCUST_PREFIX = "locust"
LOCUST_CSVS = ("stats", "stats_history", "failures", "exceptions")


def write_outputs(
    out: Path, records: Sequence[RequestRecord], summary: Summary, duration_s: float
) -> Summary:
    """Write the files; returns the summary with `files` filled in (also in summary.json)."""
    files = {f"locust_{name}_csv": out / f"{LOCUST_PREFIX}_{name}.csv" for name in LOCUST_CSVS}
    files["locust_html"] = out / "report.html"
    files["requests_csv"] = out / "requests.csv"
    write_requests_csv(records, files["requests_csv"])
    files["over_time_png"] = plot_over_time(records, duration_s, out / "over_time.png")
    files["throughput_vs_latency_png"] = plot_throughput_vs_latency(
        summary.stages, out / "throughput_vs_latency.png"
    )
    files["summary_json"] = out / "summary.json"
    summary = summary.model_copy(update={"files": {k: str(v) for k, v in files.items()}})
    files["summary_json"].write_text(summary.model_dump_json(indent=2) + "\n")
    return summary
