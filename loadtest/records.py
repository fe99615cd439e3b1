"""Every request of a run, as measured (the summary, the plots and requests.csv read these)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from loadtest.measure import Outcome
from loadtest.plan import PlannedRequest


@dataclass(frozen=True)
class RequestRecord:
    start_s: float  # seconds since the run started
    stage: int  # the load step it started in
    planned: PlannedRequest
    outcome: Outcome

    @property
    def end_s(self) -> float:
        return self.start_s + self.outcome.e2e_s


class Recorder:
    """Collects records; `stage_at(t)` tells which load step a start time falls in."""

    def __init__(self, stage_at: Callable[[float], int]) -> None:
        self._stage_at = stage_at
        self.records: list[RequestRecord] = []

    def add(self, start_s: float, planned: PlannedRequest, outcome: Outcome) -> RequestRecord:
        record = RequestRecord(start_s, self._stage_at(start_s), planned, outcome)
        self.records.append(record)
        return record


COLUMNS = (
    "start_s",
    "stage",
    "endpoint",
    "adapter",
    "stream",
    "temperature",
    "speculative",
    "planned_prompt_tokens",
    "max_tokens",
    "ok",
    "error",
    "e2e_s",
    "ttft_s",
    "tpot_s",
    "mean_itl_s",
    "prompt_tokens",
    "output_tokens",
)


def write_requests_csv(records: Iterable[RequestRecord], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in records:
            p, o = r.planned, r.outcome
            mean_itl = sum(o.itl_s) / len(o.itl_s) if o.itl_s else None
            writer.writerow(
                [
                    f"{r.start_s:.4f}",
                    r.stage,
                    p.endpoint,
                    p.adapter,
                    p.stream,
                    p.temperature,
                    p.speculative,
                    p.prompt_tokens,
                    p.max_tokens,
                    o.ok,
                    o.error or "",
                    f"{o.e2e_s:.5f}",
                    _opt(o.ttft_s),
                    _opt(o.tpot_s),
                    _opt(mean_itl),
                    "" if o.prompt_tokens is None else o.prompt_tokens,
                    o.output_tokens,
                ]
            )


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"
