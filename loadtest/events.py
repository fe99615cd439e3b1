"""A measured request as Locust request events, one request_type per measure:

- `e2e`: the request itself; response_time = end-to-end ms, response_length = output tokens,
  and the failure (HTTP error, error chunk, truncated stream) when it failed;
- `ttft`, `itl` (one event per gap between content chunks), `tpot`: milliseconds;
- `tok/s`: output tokens per second of the request, reported in the response-time column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loadtest.measure import Outcome
from loadtest.plan import PlannedRequest

Fire = Callable[..., Any]


class RequestFailed(Exception):
    """A failed request as Locust shows it (the message is the failure's description)."""


def report(fire: Fire, planned: PlannedRequest, outcome: Outcome) -> None:
    name = planned.label
    error = None if outcome.ok else RequestFailed(outcome.error)
    fire(
        request_type="e2e",
        name=name,
        response_time=outcome.e2e_s * 1000,
        response_length=outcome.output_tokens,
        exception=error,
        context={"adapter": planned.adapter, "endpoint": planned.endpoint},
    )
    if not outcome.ok:
        return
    timings = [("ttft", outcome.ttft_s), ("tpot", outcome.tpot_s)]
    timings += [("itl", gap) for gap in outcome.itl_s]
    for kind, seconds in timings:
        if seconds is not None:
            _measure(fire, kind, name, seconds * 1000)
    if outcome.tokens_per_s is not None:
        _measure(fire, "tok/s", name, outcome.tokens_per_s, outcome.output_tokens)


def _measure(fire: Fire, kind: str, name: str, value: float, length: int = 0) -> None:
    fire(
        request_type=kind,
        name=name,
        response_time=value,
        response_length=length,
        exception=None,
        context={},
    )
