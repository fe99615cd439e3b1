"""`python -m deployments.serve_run config.yaml`: `serve run`, with a graceful stop (what
`make serve` runs).

`serve run` answers SIGINT by shutting Serve down at once: its HTTP proxies are killed first,
so every stream in flight is cut off mid-token without a word, and SIGTERM kills it without
even that. Here SIGTERM and SIGINT (press Ctrl-C twice to stop at once) start a drain:
1. the apps are deleted, as Serve does it: their replicas take no new requests (the proxy
   answers 503 with Retry-After meanwhile, deployments/proxy_edge.py) and streams in flight
   get the Router's `shutdown_timeout_s` to finish;
2. a stream still running then is cut, and the proxy, still up, ends it with an error event;
3. then Serve shuts down.
A SIGTERM sent to the whole process group (a service manager stopping `make serve`) reaches
the local Ray cluster's own processes too: with its GCS gone there is nothing left to drain,
and the drain would wait out Ray's GCS reconnect timeout (60 s), so this exits at once.
It also hands Serve's proxy the edge limits (deployments/proxy_edge.py): the proxy inherits
this process's environment, where the local Ray cluster starts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import yaml

from deployments.proxy_edge import PROXY_CALLBACK, PROXY_CALLBACK_ENV

logger = logging.getLogger(__name__)


class StopRequested(BaseException):
    """Raised in the main thread by SIGTERM / SIGINT; a BaseException so that `serve run`'s
    own handlers (which shut Serve down abruptly) let it through."""


def _request_stop(signum: int, _: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise StopRequested(signal.Signals(signum).name)


def app_names(config_path: str) -> list[str]:
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    return [app.get("name", "default") for app in config.get("applications", [])]


def cluster_went_down(wait_s: float = 1.0) -> bool:
    """Whether a process of the local Ray cluster this driver started has exited within
    `wait_s` (False at once for a cluster it joined: it started no processes)."""
    from ray._private import worker

    node = worker._global_node
    if node is None or not node.all_processes:
        return False
    deadline = time.monotonic() + wait_s
    while not node.dead_processes():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def drain_and_shutdown(names: list[str]) -> None:
    from ray import serve

    for name in names:
        logger.warning("draining %s: no new requests, streams in flight may finish", name)
        serve.delete(name, _blocking=True)
    serve.shutdown()


def main(argv: list[str]) -> int:
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import run

    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    # Ray's core installs its own SIGTERM handler (log and die) when it starts: ours go in
    # after it, and `serve run` uses the connection made here
    ray.init(address=os.environ.get("RAY_ADDRESS"), namespace=SERVE_NAMESPACE)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        run.main(args=argv, prog_name="serve run", standalone_mode=False)
    except StopRequested as stop:
        logging.basicConfig(level=logging.INFO)
        if cluster_went_down():
            logger.warning("%s: the local Ray cluster is stopping too; nothing to drain", stop)
            sys.stdout.flush()
            os._exit(0)  # Ray's exit hooks would wait for the GCS that is gone
        logger.warning("%s: stopping gracefully", stop)
        drain_and_shutdown(app_names(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
