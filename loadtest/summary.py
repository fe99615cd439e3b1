"""The run's JSON summary: latency percentiles, throughput, goodput at the SLO, error rate and
cost per million output tokens, overall, per load step and per adapter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from loadtest.records import RequestRecord
from loadtest.workload import SLO


class Percentiles(BaseModel):
    count: int = Field(description="Samples.")
    mean: float | None = Field(description="Mean, ms.")
    p50: float | None = Field(description="Median, ms.")
    p95: float | None = Field(description="95th percentile, ms.")
    p99: float | None = Field(description="99th percentile, ms.")


class Latency(BaseModel):
    ttft_ms: Percentiles = Field(description="Time to first token (streamed requests).")
    itl_ms: Percentiles = Field(description="Gaps between content chunks.")
    tpot_ms: Percentiles = Field(description="(e2e - ttft) / (output tokens - 1).")
    e2e_ms: Percentiles = Field(description="Request start to last byte.")


class Throughput(BaseModel):
    requests_per_s: float = Field(description="Successful requests per second.")
    output_tokens_per_s: float = Field(description="Output tokens of successful requests / s.")
    prompt_tokens_per_s: float = Field(description="Prompt tokens of successful requests / s.")
    total_output_tokens: int
    total_prompt_tokens: int


class Goodput(BaseModel):
    slo: SLO = Field(description="The limits a request must meet (non-streamed: TTFT = e2e).")
    requests_per_s: float = Field(description="Successful requests within the SLO per second.")
    output_tokens_per_s: float = Field(description="Their output tokens per second.")
    share: float = Field(description="Share of all requests that met the SLO.")


class Cost(BaseModel):
    gpu_hour_usd: float = Field(description="Price of one GPU-hour, as stated.")
    num_gpus: float = Field(description="GPUs the endpoint holds during the run.")
    usd_per_million_output_tokens: float | None = Field(
        description="GPU cost of the run / output tokens * 1e6 (None without tokens)."
    )


class GroupStats(BaseModel):
    name: str
    requests: int
    failures: int
    error_rate: float
    output_tokens_per_s: float
    ttft_ms: Percentiles
    e2e_ms: Percentiles


class StageStats(GroupStats):
    index: int
    start_s: float
    end_s: float


class Summary(BaseModel):
    workload: str
    endpoint: str
    duration_s: float = Field(description="Wall time of the load phase.")
    requests: int
    failures: int
    error_rate: float
    errors: dict[str, int] = Field(description="Failure messages and how often they occurred.")
    latency: Latency
    throughput: Throughput
    goodput: Goodput
    cost: Cost
    stages: list[StageStats]
    adapters: list[GroupStats]
    files: dict[str, str] = Field(default_factory=dict, description="What the run wrote.")


def percentiles(values_s: Sequence[float]) -> Percentiles:
    if not values_s:
        return Percentiles(count=0, mean=None, p50=None, p95=None, p99=None)
    ms = np.asarray(values_s, dtype=float) * 1000.0
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return Percentiles(count=len(ms), mean=float(ms.mean()), p50=p50, p95=p95, p99=p99)


def meets_slo(record: RequestRecord, slo: SLO) -> bool:
    o = record.outcome
    if not o.ok:
        return False
    ttft = o.ttft_s if o.ttft_s is not None else o.e2e_s
    checks = (
        (slo.ttft_ms, ttft),
        (slo.tpot_ms, o.tpot_s),
        (slo.e2e_ms, o.e2e_s),
    )
    return all(limit is None or value is None or value * 1000 <= limit for limit, value in checks)


def summarize(
    records: Sequence[RequestRecord],
    *,
    workload: str,
    endpoint: str,
    duration_s: float,
    slo: SLO,
    stage_names: Sequence[str],
    stage_bounds: Sequence[tuple[float, float]],
    gpu_hour_usd: float,
    num_gpus: float,
) -> Summary:
    ok = [r for r in records if r.outcome.ok]
    good = [r for r in ok if meets_slo(r, slo)]
    tokens = sum(r.outcome.output_tokens for r in ok)
    duration = max(duration_s, 1e-9)
    gpu_usd = gpu_hour_usd * num_gpus * duration_s / 3600
    return Summary(
        workload=workload,
        endpoint=endpoint,
        duration_s=duration_s,
        requests=len(records),
        failures=len(records) - len(ok),
        error_rate=_rate(len(records) - len(ok), len(records)),
        errors=dict(Counter(r.outcome.error for r in records if r.outcome.error).most_common(20)),
        latency=latency(ok),
        throughput=Throughput(
            requests_per_s=len(ok) / duration,
            output_tokens_per_s=tokens / duration,
            prompt_tokens_per_s=sum(_prompt_tokens(r) for r in ok) / duration,
            total_output_tokens=tokens,
            total_prompt_tokens=sum(_prompt_tokens(r) for r in ok),
        ),
        goodput=Goodput(
            slo=slo,
            requests_per_s=len(good) / duration,
            output_tokens_per_s=sum(r.outcome.output_tokens for r in good) / duration,
            share=_rate(len(good), len(records)),
        ),
        cost=Cost(
            gpu_hour_usd=gpu_hour_usd,
            num_gpus=num_gpus,
            usd_per_million_output_tokens=gpu_usd / tokens * 1e6 if tokens else None,
        ),
        stages=_stages(records, stage_names, stage_bounds),
        adapters=[
            _group(name, [r for r in records if r.planned.adapter == name], duration)
            for name in sorted({r.planned.adapter for r in records})
        ],
    )


def latency(ok: Sequence[RequestRecord]) -> Latency:
    return Latency(
        ttft_ms=percentiles([r.outcome.ttft_s for r in ok if r.outcome.ttft_s is not None]),
        itl_ms=percentiles([gap for r in ok for gap in r.outcome.itl_s]),
        tpot_ms=percentiles([r.outcome.tpot_s for r in ok if r.outcome.tpot_s is not None]),
        e2e_ms=percentiles([r.outcome.e2e_s for r in ok]),
    )


def _stages(
    records: Sequence[RequestRecord],
    names: Sequence[str],
    bounds: Sequence[tuple[float, float]],
) -> list[StageStats]:
    stages = []
    for index, (name, (start, end)) in enumerate(zip(names, bounds, strict=True)):
        mine = [r for r in records if r.stage == index]
        if not mine:
            continue
        group = _group(name, mine, max(end - start, 1e-9))
        stages.append(StageStats(index=index, start_s=start, end_s=end, **group.model_dump()))
    return stages


def _group(name: str, records: Sequence[RequestRecord], duration_s: float) -> GroupStats:
    ok = [r for r in records if r.outcome.ok]
    return GroupStats(
        name=name,
        requests=len(records),
        failures=len(records) - len(ok),
        error_rate=_rate(len(records) - len(ok), len(records)),
        output_tokens_per_s=sum(r.outcome.output_tokens for r in ok) / duration_s,
        ttft_ms=percentiles([r.outcome.ttft_s for r in ok if r.outcome.ttft_s is not None]),
        e2e_ms=percentiles([r.outcome.e2e_s for r in ok]),
    )


def _prompt_tokens(record: RequestRecord) -> int:
    counted = record.outcome.prompt_tokens
    return record.planned.prompt_tokens if counted is None else counted


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
