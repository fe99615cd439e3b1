"""`python -m loadtest` without --url: it starts the local cluster from a Serve config (`serve
run`; here config.tiny.yaml, whose model starts in seconds), drives it, writes every output,
and leaves no cluster behind."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.loadtest.expected import OUTPUTS

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = {
    "name": "local-smoke",
    "prompt_tokens": {"kind": "uniform", "low": 16, "high": 48},
    "output_tokens": {"kind": "uniform", "low": 8, "high": 24},
    "adapters": {"base": 2, "python-tests": 1},
    "stream_share": 0.8,
    "sampling": {"sampled_share": 0.3},
    "shape": {"kind": "steps", "users": [1, 2], "step_s": 8},
}


@pytest.mark.ray
@pytest.mark.slow
def test_a_short_run_against_the_local_cluster(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "loadtest", "--workload", str(path), "--port", "0"]
    command += ["--config", "config.tiny.yaml"]
    command += ["--out", str(out), "--gpu-hour-usd", "2", "--num-gpus", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    log = (out / "serve.log").read_text()[-3000:] if (out / "serve.log").exists() else ""
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n--- serve.log ---\n{log}"
    assert "cluster healthy at http://127.0.0.1:" in result.stderr
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name

    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0 and summary["error_rate"] == 0
    assert summary["throughput"]["output_tokens_per_s"] > 0
    for measure in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        stats = summary["latency"][measure]
        assert stats["count"] > 0 and 0 < stats["p50"] <= stats["p95"] <= stats["p99"], measure
    assert summary["goodput"]["slo"]["ttft_ms"] == 2000
    assert summary["cost"]["usd_per_million_output_tokens"] > 0
    assert [s["name"] for s in summary["stages"]] == ["1 users", "2 users"]
    assert {a["name"] for a in summary["adapters"]} == {"base", "python-tests"}

    rows = list(csv.DictReader((out / "requests.csv").open()))
    assert all(r["ok"] == "True" for r in rows)
    served = yaml.safe_load((out / "serve_config.yaml").read_text())
    port = served["http_options"]["port"]
    assert port != 8000 and f"127.0.0.1:{port}" in result.stderr
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass  # the cluster it started is gone
