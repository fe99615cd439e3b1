"""SIGTERM to `python -m deployments.serve_run` (what `make serve` runs) with streams in
flight: no new requests (503 + Retry-After), a stream that can finish in the grace period
finishes, one that cannot ends with an error event, and the process exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deployments.serve_harness import API_KEY, free_port
from tests.factories import make_tiny_model
from tests.router.tiny_tokenizer import make_tiny_tokenizer

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 4.0
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with room for streams longer than the grace period."""
    path = tmp_path_factory.mktemp("long") / "tiny-long"
    make_tiny_model(path, vocab_size=300, max_position_embeddings=16384)
    return make_tiny_tokenizer(path, vocab_size=300)


def write_config(path: Path, model: Path, port: int) -> Path:
    engine = {"num_blocks": 1040, "block_size": 16, "max_num_seqs": 4}
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "tandem",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": {
                    "model": str(model),
                    "llm": {"ray_actor_options": {"num_cpus": 0}, "engine": engine},
                    "draft": {"enabled": False},
                    "router": {
                        "api_keys": [API_KEY],
                        "ray_actor_options": {"num_cpus": 0},
                        "shutdown_timeout_s": GRACE_S,
                    },
                },
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def server(tmp_path: Path, long_context_model: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", long_context_model, port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve_run", str(config)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, to clean up whatever it started
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, tmp_path / "serve.log")
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/v1/models", headers=AUTH, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready:\n{log.read_text()[-3000:]}")


class Stream(threading.Thread):
    """A streamed completion read in the background; `last` is its final event."""

    def __init__(self, url: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.body = {"model": "tiny-long", "prompt": "def f(x):", "max_tokens": max_tokens}
        self.body |= {"stream": True, "ignore_eos": True}
        self.url = url
        self.started = threading.Event()
        self.events: list[str] = []

    def run(self) -> None:
        url = f"{self.url}/v1/completions"
        try:
            with httpx.stream("POST", url, json=self.body, headers=AUTH, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line.removeprefix("data: "))
                        self.started.set()
        except httpx.HTTPError as e:  # a truncated body: recorded as what the client saw
            self.events.append(f"<transport error {e!r}>")
        self.started.set()

    @property
    def last(self) -> str:
        return self.events[-1] if self.events else ""


def test_sigterm_drains_streams_and_ends_the_rest_with_an_error_event(server):
    process, url = server
    # the long one must outlast the grace period however fast the engine gets (3500 tokens
    # of this tiny model once took longer than GRACE_S; now they do not)
    long, short = Stream(url, max_tokens=16000), Stream(url, max_tokens=40)
    long.start()
    assert long.started.wait(30)
    short.start()
    assert short.started.wait(30)
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)  # the main process, as `docker stop` and k8s do

    refused = None
    seen: list[int] = []  # the statuses before the 503, for the failure message
    while refused is None and time.monotonic() - stopped < GRACE_S:
        response = httpx.post(
            f"{url}/v1/completions",
            json={"model": "tiny-long", "prompt": "x", "max_tokens": 2},
            headers=AUTH,
            timeout=10,
        )
        if response.status_code == 503:
            refused = response
        seen.append(response.status_code)
        time.sleep(0.1)
    short.join(30)
    long.join(GRACE_S + 30)
    exit_code = process.wait(GRACE_S + 60)
    elapsed = time.monotonic() - stopped

    assert refused is not None, f"new requests must be refused while draining: {seen}"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "service_unavailable"
    assert short.last == "[DONE]"  # finished within the grace period
    assert long.last.startswith('{"error"'), long.events[-3:]  # cut off, and said so
    assert json.loads(long.last)["error"]["code"] == "stream_cut_off"
    assert exit_code == 0 and elapsed < GRACE_S + 60


def test_sigterm_to_the_whole_process_group_exits_at_once(server, tmp_path: Path):
    """A service manager stopping the process group signals Ray's own processes too: with
    the local cluster going down there is nothing to drain, and the process must not wait
    out Ray's 60 s GCS reconnect timeout."""
    process, url = server
    stopped = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    exit_code = process.wait(30)
    elapsed = time.monotonic() - stopped
    log = (tmp_path / "serve.log").read_text()
    assert exit_code == 0, log[-3000:]
    assert elapsed < 15
    assert "nothing to drain" in log
    deadline = time.monotonic() + 15  # Ray's workers end with their raylet, soon after
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", headers=AUTH, timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.2)
    raise AssertionError("the server still answers after its process group was stopped")
