"""The Serve app that benchmarks.serve_overhead measures, and `serve run` of it in a
subprocess: the config is built here, not read from config.yaml, so the benchmark stays the
same when the served model or the demo settings change.

CPU: the bundled model (models/tandem-code-8m), fp32, 16 sequences per step. CUDA: the
random 1.1B Llama that benchmarks/serve_gpu_model.py saves, bf16, 256 sequences and 8192
tokens per step, CUDA graphs. Both: speculation, the DraftServer and LoRA off; the Routers
queue enough that no request of the benchmark is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "models" / "tandem-code-8m"
PORT = 8000
URL = f"http://127.0.0.1:{PORT}"
SERVE_CLI = "from ray.serve.scripts import cli; cli()"  # `serve`, where it is not on PATH
RAY_CLI = "from ray.scripts.scripts import main; main()"  # `ray`
GPU_MODEL_NAME = "llama-1b-random"
CPU_ENGINE: dict[str, Any] = {
    "device": "cpu",
    "dtype": "float32",
    "max_num_seqs": 16,
    "max_num_batched_tokens": 1024,
    "lora": None,
    "spec": None,
}
GPU_ENGINE: dict[str, Any] = {
    "device": "cuda",
    "dtype": "bfloat16",
    "memory_fraction": 0.6,  # of free memory; shared out when replicas share the GPU
    "max_num_seqs": 256,
    "max_num_batched_tokens": 8192,
    "lora": None,
    "spec": None,
}


def engine_settings(
    device: str, llm_replicas: int = 1, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One replica's engine settings (the in-process baseline uses llm_replicas=1), with
    `options` (engine fields, e.g. mixed_graphs) over the defaults."""
    if device == "cpu":
        return {**CPU_ENGINE, **(options or {})}
    share = {"memory_fraction": GPU_ENGINE["memory_fraction"] / llm_replicas}
    return {**GPU_ENGINE, **share, **(options or {})}


def serve_config(
    device: str,
    model_dir: Path,
    *,
    routers: int = 1,
    llm_replicas: int = 1,
    max_concurrency: int = 1,
    engine_process: bool | None = None,
    engine_options: dict[str, Any] | None = None,
    max_running: int | None = None,
) -> dict[str, Any]:
    """The Serve config (`serve run` YAML) of one measured app. `engine_process`: the
    replicas' engine in a process of their own (None: the app's default, on with CUDA);
    `engine_options`: engine fields over the defaults (engine_settings); `max_running`:
    the Routers' admission limit, cluster-wide (None: the app's default)."""
    if device == "cpu":  # Ray reserves CPUs; the Routers' use does not need a reservation
        cores = os.cpu_count() or 1
        llm_options: dict[str, Any] = {"num_cpus": min(1.0, cores / llm_replicas)}
        router_options: dict[str, Any] = {"num_cpus": 0}
    else:
        llm_options = {"num_cpus": 1, "num_gpus": 1 / llm_replicas}
        router_options = {"num_cpus": 0.5}
    args: dict[str, Any] = {
        "model": str(model_dir),
        "served_model_name": GPU_MODEL_NAME if device == "cuda" else None,
        "llm": {
            "num_replicas": llm_replicas,
            "ray_actor_options": llm_options,
            "engine": engine_settings(device, llm_replicas, engine_options),
            "engine_process": engine_process,
        },
        "draft": {"enabled": False},
        "adapters": {"preload": {}},
        "router": {
            "num_replicas": routers,
            "ray_actor_options": router_options,
            "max_running": max_running,
            "max_waiting": 2 * max_concurrency + 64,  # never a 429 in the benchmark
            "speculation": {"mode": "off"},
        },
    }
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": PORT},
        "applications": [
            {
                "name": "tandem",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": args,
            }
        ],
    }


def served_model_name(config: dict[str, Any]) -> str:
    """The name clients send as `model` (as deployments.app.build_app derives it)."""
    args = config["applications"][0]["args"]
    return args.get("served_model_name") or Path(args["model"]).name


@contextmanager
def serving(
    config_path: Path, env: Mapping[str, str], ready_s: float, log: Path
) -> Iterator[subprocess.Popen]:
    """`serve run config_path` with `env` added to its environment (Ray's processes, the
    replicas among them, inherit it), up until the API answers; stopped on exit. On failure
    the tail of its output goes to stderr."""
    wait_port_free(30.0)  # an earlier run's proxy must not be mistaken for this one
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE_CLI, "run", str(config_path)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    try:
        wait_ready(server, ready_s)
        yield server
    except BaseException:
        print(f"--- serve run output ({log}) ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        stop_server(server)


def wait_port_free(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{URL}/health", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(1)
    raise RuntimeError(f"something still answers at {URL}; stop it first")


def wait_ready(server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"serve run exited with {server.returncode}")
        try:
            if httpx.get(f"{URL}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("the Serve app did not come up")


def stop_server(server: subprocess.Popen) -> None:
    """Ctrl-C (serve shuts down, and the Ray it started); SIGTERM to its process group if
    that does not end it; then force, and stop the Ray it started."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGTERM, 30)):
        if server.poll() is None:
            if sig == signal.SIGINT:
                server.send_signal(sig)
            else:
                os.killpg(server.pid, sig)
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            pass
    server.kill()
    server.wait()
    subprocess.run([sys.executable, "-c", RAY_CLI, "stop", "--force"], cwd=ROOT, check=False)


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
