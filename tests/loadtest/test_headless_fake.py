"""`python -m loadtest --url ...` end to end against a fake OpenAI server that breaks some
streams on purpose: every file is written, and exactly the broken requests count as failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.loadtest.expected import OUTPUTS
from tests.loadtest.fake_openai import fake_openai_server

REPO = Path(__file__).resolve().parents[2]


def _loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loadtest", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_broken_streams_are_failures_and_the_rest_succeed(tmp_path: Path) -> None:
    workload = {
        "name": "fake",
        "prompt_tokens": {"kind": "fixed", "value": 8},
        "output_tokens": {"kind": "uniform", "low": 6, "high": 12},
        "adapters": {"base": 3, "lora-a": 1, "error-chunk": 1, "cut": 1, "no-done": 1},
        "stream_share": 1.0,
        "shape": {"kind": "steps", "users": [1, 2], "step_s": 3},
    }
    path = tmp_path / "workload.yaml"
    path.write_text(yaml.safe_dump(workload))
    out = tmp_path / "out"
    with fake_openai_server() as url:
        result = _loadtest("--url", url, "--workload", str(path), "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]  # some requests failed
    assert "failed" in result.stderr and "[" in result.stderr  # progress and final lines
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name

    rows = list(csv.DictReader((out / "requests.csv").open()))
    broken = {"error-chunk", "cut", "no-done"}
    assert {r["adapter"] for r in rows} >= broken | {"base", "lora-a"}
    assert all(r["ok"] == "False" for r in rows if r["adapter"] in broken)
    assert all(r["ok"] == "True" for r in rows if r["adapter"] not in broken)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == sum(r["adapter"] in broken for r in rows) > 0
    errors = set(summary["errors"])
    assert "error chunk: replica failed" in errors
    assert "truncated stream: it closed before data: [DONE]" in errors
    assert any(e.startswith("truncated stream: ") and "DONE" not in e for e in errors)  # cut
    assert summary["throughput"]["output_tokens_per_s"] > 0
    assert [s["name"] for s in summary["stages"]] == ["1 users", "2 users"]

    stats = list(csv.DictReader((out / "locust_stats.csv").open()))
    kinds = {r["Type"] for r in stats}
    assert kinds >= {"e2e", "ttft", "itl", "tpot", "tok/s"}
    per_name = [r for r in stats if r["Name"] != "Aggregated"]
    failed = {r["Name"].split()[-1] for r in per_name if int(r["Failure Count"]) > 0}
    assert failed == broken
    assert "error chunk: replica failed" in (out / "locust_failures.csv").read_text()


def test_a_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = _loadtest("--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "cannot read the Serve config" in result.stderr


def test_a_bad_workload_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("shape: {kind: constant, users: 0}\n")
    result = _loadtest("--url", "http://127.0.0.1:9", "--workload", str(path))
    assert result.returncode == 2
    assert "w.yaml is invalid" in result.stderr and "users" in result.stderr
