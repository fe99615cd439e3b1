"""A real Prometheus scrapes a local Tandem cluster during a short load run, and every query
of the Grafana dashboard returns data."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from k8s.monitoring.dashboard import dashboard, queries
from loadtest.cluster import free_port
from tests.observability.local_cluster import serve_with_metrics
from tests.observability.prometheus import prometheus_binary, query, running_prometheus
from tests.observability.promql import expand

REPO = Path(__file__).resolve().parents[2]
LOAD_S = 45
WORKLOAD = {
    "name": "observability",
    "prompt_tokens": {"kind": "uniform", "low": 16, "high": 48},
    "output_tokens": {"kind": "fixed", "value": 24},
    "adapters": {"base": 3, "python-tests": 1},
    "sampling": {"sampled_share": 0.0},  # greedy base requests speculate
    "shape": {"kind": "constant", "users": 2, "duration_s": LOAD_S},
}


def _has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def _start_load(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    workload = tmp_path / "workload.yaml"
    workload.write_text(yaml.safe_dump(WORKLOAD))
    command = [sys.executable, "-m", "loadtest", "--url", url, "--workload", str(workload)]
    command += ["--out", str(tmp_path / "load"), "--quiet"]
    log = (tmp_path / "load.log").open("wb")
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _wait_for(prometheus: str, expr: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _has_data(query(prometheus, expr)):
        assert time.monotonic() < deadline, f"no data for {expr} after {timeout_s} s"
        time.sleep(1)


@pytest.mark.ray
@pytest.mark.slow
def test_every_dashboard_query_returns_data(tmp_path: Path) -> None:
    binary = prometheus_binary()
    metrics_port = free_port()
    pending = {expand(expr): title for title, expr in queries(dashboard())}
    with (
        serve_with_metrics(metrics_port) as url,
        running_prometheus(binary, [f"127.0.0.1:{metrics_port}"], tmp_path / "prom") as prom,
    ):
        load = _start_load(url, tmp_path)
        try:
            _wait_for(prom, "sum(ray_tandem_generation_tokens_total)", timeout_s=LOAD_S / 2)
            loaded = httpx.post(
                f"{url}/v1/load_lora_adapter",
                json={"lora_name": "docstrings-live", "lora_path": "docstrings"},
                timeout=60,
            )
            assert loaded.status_code == 200, loaded.text
            while pending and load.poll() is None:
                for expr in list(pending):
                    if _has_data(query(prom, expr)):
                        del pending[expr]
                time.sleep(1)
        finally:
            returncode = load.wait(timeout=LOAD_S + 120)
    assert pending == {}, "dashboard queries without data:\n" + "\n".join(
        f"{title}: {expr}" for expr, title in pending.items()
    )
    assert returncode == 0, (tmp_path / "load.log").read_text()[-3000:]
