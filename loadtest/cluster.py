"""The local cluster for a run without --url: `serve run CONFIG` as a child process, ready
when GET /health answers 200, stopped (Ctrl-C first, then harder) when the run ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

STOP_GRACE_S = 45.0
PORT_CLOSE_GRACE_S = 30.0  # how long stop() waits for the port to close


class ClusterStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    """The `serve` CLI of this interpreter's environment."""
    beside = Path(sys.executable).with_name("serve")
    found = str(beside) if beside.is_file() else shutil.which("serve")
    if found is None:
        raise ClusterStartError("no `serve` command; install ray[serve] into this environment")
    return [found, "run"]


def local_config(config: Path, port: int | None) -> dict[str, Any]:
    """The Serve config to run: CONFIG with its HTTP port replaced (port 0: a free one)."""
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ClusterStartError(f"cannot read the Serve config {config}: {e}") from e
    if not isinstance(data, dict) or not data.get("applications"):
        raise ClusterStartError(f"{config} is not a Serve config (no `applications`)")
    http = data.setdefault("http_options", {})
    http.setdefault("host", "127.0.0.1")
    if port is not None:
        http["port"] = port or free_port()
    http.setdefault("port", 8000)
    return data


class LocalCluster:
    def __init__(
        self, config: Path, port: int | None, workdir: Path, startup_timeout_s: float = 300
    ) -> None:
        self.source = config.resolve()
        self.config = local_config(self.source, port)
        self.workdir = workdir
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        http = self.config["http_options"]
        host = "127.0.0.1" if http["host"] in ("0.0.0.0", "::") else http["host"]
        return f"http://{host}:{http['port']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "serve.log"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "serve_config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with self.log_path.open("wb") as log:
            # its own session: stop() signals this process group only
            self._process = subprocess.Popen(
                [*serve_command(), str(path)],
                cwd=self.source.parent,  # `serve run` imports the app from here
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # serve run shuts Serve and its Ray cluster down
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(10)
        _signal_group(process.pid, signal.SIGKILL)  # anything of ours left behind
        self._wait_port_closed()

    def _wait_port_closed(self) -> None:
        """Ray's proxy is a grandchild: it notices its raylet is gone a moment later (longer
        on a loaded machine). Return once nothing answers on the port, or after the grace."""
        http = self.config["http_options"]
        host = "127.0.0.1" if http["host"] in ("0.0.0.0", "::") else http["host"]
        deadline = time.monotonic() + PORT_CLOSE_GRACE_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, http["port"]), 1).close()
            except OSError:
                return
            time.sleep(0.5)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ClusterStartError(
                    f"`serve run` exited with {self._process.returncode} before the app was "
                    f"healthy; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if _healthy(self.url):
                return
            time.sleep(1.0)
        raise ClusterStartError(
            f"{self.url}/health did not answer 200 within {self.startup_timeout_s:g} s; raise "
            f"--startup-timeout or read {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
