"""One headless run: start the local cluster unless given a URL, drive it with Locust
in-process for the set time, then write Locust's CSV and HTML and our summary and plots."""

from __future__ import annotations

import json
import os
import random
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gevent
from gevent import Greenlet
from locust.env import Environment
from locust.html import get_html_report
from locust.runners import STATE_STOPPED, LocalRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter, stats_history

from loadtest.cluster import LocalCluster
from loadtest.locust_shape import WorkloadShape
from loadtest.outputs import LOCUST_PREFIX, write_outputs
from loadtest.pacing import WaitTime, arrival_pacer, closed_loop
from loadtest.plan import RequestPlanner
from loadtest.progress import progress_line
from loadtest.prompts import find_tokenizer
from loadtest.records import Recorder
from loadtest.settings import RunSettings
from loadtest.shapes import ArrivalRate, stage_bounds
from loadtest.summary import Summary, summarize
from loadtest.users import make_user_class
from loadtest.workload import Workload, load_workload

Log = Callable[[str], None]
STOP_GRACE_S = 5.0  # past the set duration before the runner is stopped regardless


def run(settings: RunSettings, log: Log | None = None) -> Summary:
    log = log or _stderr
    workload = load_workload(settings.workload)
    if settings.model:
        workload = workload.model_copy(update={"model": settings.model})
    settings.out.mkdir(parents=True, exist_ok=True)
    if settings.url:
        tokenizer = str(settings.tokenizer) if settings.tokenizer else None
        return run_against(settings.url.rstrip("/"), workload, settings, tokenizer, log)
    cluster = LocalCluster(settings.config, settings.port, settings.out, settings.startup_timeout_s)
    log(f"starting the local cluster: serve run {settings.config} (log: {cluster.log_path})")
    with cluster:
        log(f"cluster healthy at {cluster.url}")
        tokenizer_dir = settings.tokenizer or _config_tokenizer(cluster.source, cluster.config)
        if settings.api_key is None and (key := _local_api_key()):
            settings = settings.model_copy(update={"api_key": key})
        return run_against(cluster.url, workload, settings, _opt_str(tokenizer_dir), log)


def run_against(
    url: str, workload: Workload, settings: RunSettings, tokenizer: str | None, log: Log
) -> Summary:
    base_model = workload.model or discover_base_model(url, settings.api_key)
    duration = settings.run_duration(workload)
    shape = WorkloadShape(workload.shape, duration)
    recorder = Recorder(workload.shape.stage_at)
    wait_time, initial_delay = _pacing(workload, shape.elapsed_s)
    user_class = make_user_class(
        RequestPlanner(workload, base_model, tokenizer),
        recorder,
        wait_time,
        shape.elapsed_s,
        settings.api_key,
        initial_delay,
    )
    env = Environment(user_classes=[user_class], shape_class=shape, host=url)
    runner = env.create_local_runner()
    csv_writer = StatsCSVFileWriter(
        env, PERCENTILES_TO_REPORT, str(settings.out / LOCUST_PREFIX), full_history=True
    )
    background: list[Greenlet] = [
        gevent.spawn(csv_writer.stats_writer),
        gevent.spawn(stats_history, runner),
    ]
    log(f"load: {workload.name} against {url} ({base_model}) for {duration:g} s")
    load_s = _drive(runner, shape, duration, recorder, settings.quiet, log)
    gevent.sleep(1.1)  # one more pass of the CSV writer with the final numbers
    gevent.killall(background)
    csv_writer.close_files()
    (settings.out / "report.html").write_text(get_html_report(env, show_download_link=False))
    summary = summarize(
        recorder.records,
        workload=workload.name,
        endpoint=url,
        duration_s=load_s,
        slo=settings.slo(workload),
        stage_names=workload.shape.stage_names(),
        stage_bounds=stage_bounds(workload.shape, load_s),
        gpu_hour_usd=settings.gpu_hour_usd,
        num_gpus=settings.num_gpus,
    )
    return write_outputs(settings.out, recorder.records, summary, load_s)


def discover_base_model(url: str, api_key: str | None) -> str:
    """The first model /v1/models lists without a parent (adapters name their base)."""
    request = urllib.request.Request(f"{url}/v1/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            models = json.load(response).get("data") or []
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot list models at {url}/v1/models ({e}); pass --model") from e
    bases = [m["id"] for m in models if not m.get("parent")] or [m["id"] for m in models]
    if not bases:
        raise ValueError(f"{url}/v1/models lists no model; pass --model")
    return str(bases[0])


def _drive(
    runner: LocalRunner,
    shape: WorkloadShape,
    duration_s: float,
    recorder: Recorder,
    quiet: bool,
    log: Log,
) -> float:
    """Run the shape to its end; print progress; returns the load phase's wall time."""
    started = time.perf_counter()
    runner.start_shape()
    every = 1.0 if sys.stderr.isatty() else 5.0
    last_print = 0.0
    while runner.state != STATE_STOPPED and shape.elapsed_s() < duration_s + STOP_GRACE_S:
        gevent.sleep(0.25)
        elapsed = shape.elapsed_s()
        if not quiet and elapsed - last_print >= every:
            last_print = elapsed
            log(progress_line(elapsed, duration_s, runner.user_count, recorder.records))
    load_s = min(time.perf_counter() - started, duration_s)
    runner.quit()
    return load_s


def _pacing(
    workload: Workload, elapsed_s: Callable[[], float]
) -> tuple[WaitTime, Callable[[], float]]:
    shape = workload.shape
    if not isinstance(shape, ArrivalRate):
        return closed_loop(workload.think_time_s), lambda: 0.0
    rng = random.Random(workload.seed + 2)
    spread = shape.users / shape.rates_rps[0]  # first arrivals spread over one gap per user
    pacer = arrival_pacer(shape.rate_at, shape.users, shape.process, elapsed_s, workload.seed)
    return pacer, lambda: rng.uniform(0, spread)


def _config_tokenizer(config_path: Path, config: dict) -> Path | None:
    try:
        model = config["applications"][0]["args"]["model"]
    except (KeyError, IndexError, TypeError):
        return None
    model_dir = Path(model)
    return find_tokenizer(model_dir if model_dir.is_absolute() else config_path.parent / model_dir)


def _local_api_key() -> str | None:
    """The first of TANDEM_API_KEYS, which the local cluster's Router then requires."""
    keys = [k.strip() for k in os.environ.get("TANDEM_API_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else None


def _opt_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
