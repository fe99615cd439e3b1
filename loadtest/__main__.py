"""`python -m loadtest`: a headless Locust load test of an OpenAI-compatible endpoint.

Exit status: 0 when every request succeeded, 1 when some failed (all files are written
either way), 2 when the run could not start (bad workload, cluster did not come up).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import locust  # noqa: F401  (before any networking import: gevent patches the stdlib)
from pydantic import ValidationError

from loadtest.cluster import ClusterStartError
from loadtest.runner import run
from loadtest.settings import RunSettings


def parse_args(argv: list[str] | None = None) -> RunSettings:
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n")[0])
    p.add_argument(
        "--url",
        help="endpoint base URL, e.g. http://host:8000 (default: start "
        "the local cluster from --config)",
    )
    p.add_argument(
        "--workload",
        type=Path,
        default=Path("loadtest/workloads/default.yaml"),
        help="workload file (see loadtest/workload.py)",
    )
    p.add_argument(
        "--config", type=Path, default=Path("config.yaml"), help="Serve config of the local cluster"
    )
    p.add_argument("--port", type=int, help="local cluster HTTP port (0: any free port)")
    p.add_argument(
        "--duration",
        type=float,
        dest="duration_s",
        help="seconds to run (default: the workload shape's length)",
    )
    p.add_argument("--out", type=Path, default=Path("out/loadtest"), help="output directory")
    p.add_argument(
        "--api-key",
        default=os.environ.get("OPENAI_API_KEY"),
        help="bearer token (default: $OPENAI_API_KEY)",
    )
    p.add_argument("--model", help="base model name (default: ask /v1/models)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json for exact prompt lengths")
    p.add_argument("--gpu-hour-usd", type=float, default=2.5, help="price of one GPU-hour")
    p.add_argument("--num-gpus", type=float, default=1.0, help="GPUs behind the endpoint")
    p.add_argument("--slo-ttft-ms", type=float)
    p.add_argument("--slo-tpot-ms", type=float)
    p.add_argument("--slo-e2e-ms", type=float)
    p.add_argument("--startup-timeout", type=float, default=300, dest="startup_timeout_s")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    args = vars(p.parse_args(argv))
    try:
        return RunSettings.model_validate({k: v for k, v in args.items() if v is not None})
    except ValidationError as e:
        p.error(str(e))
        raise  # p.error exits; this keeps type checkers content


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        summary = run(settings)
    except (ValueError, ClusterStartError) as e:
        print(f"loadtest: {e}", file=sys.stderr)
        return 2
    t, lat = summary.throughput, summary.latency
    print(
        f"{summary.requests} requests, {summary.failures} failed "
        f"({summary.error_rate:.1%}) in {summary.duration_s:.0f} s | "
        f"{t.output_tokens_per_s:.1f} output tok/s | TTFT p50/p99 "
        f"{_ms(lat.ttft_ms.p50)}/{_ms(lat.ttft_ms.p99)} | goodput "
        f"{summary.goodput.requests_per_s:.2f} req/s | "
        f"${summary.cost.usd_per_million_output_tokens or 0:.2f} per 1M output tokens\n"
        f"files in {settings.out}: summary.json, report.html, locust_*.csv, *.png",
        file=sys.stderr,
    )
    return 1 if summary.failures else 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
