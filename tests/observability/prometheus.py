"""A real Prometheus for tests: found on PATH (or installed by k8s/install_prometheus.sh),
started on loopback with a config scraping the given targets every second."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtest.cluster import free_port

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "k8s" / "install_prometheus.sh"


def prometheus_binary() -> str:
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if found is None:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, timeout=600)
        found = shutil.which("prometheus")
    if found is None:
        pytest.fail(f"Prometheus is not installed and {INSTALL_SCRIPT} could not install it")
    return found


@contextmanager
def running_prometheus(binary: str, targets: list[str], workdir: Path) -> Iterator[str]:
    """Yields Prometheus' base URL; stops the process it started on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": targets}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, process, workdir / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; its result vector (a PromQL error fails the test with the message)."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prometheus at {url} not ready after 30 s: {log.read_text()[-2000:]}")
