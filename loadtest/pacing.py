"""Wait times for Locust users: back to back (closed loop) or paced to an arrival rate."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

WaitTime = Callable[[Any], float]


def closed_loop(think_time_s: float) -> WaitTime:
    return lambda user: think_time_s


def arrival_pacer(
    rate_at: Callable[[float], float | None],
    users: int,
    process: str,
    clock: Callable[[], float],
    seed: int = 0,
) -> WaitTime:
    """Each of `users` users starts requests at rate_at(t) / users per second (exponential gaps
    for "poisson", even ones for "uniform"). A user that falls behind its schedule starts at
    once and does not burst to catch up: the summary then shows the lower achieved rate."""
    rng = random.Random(seed)

    def wait(user: Any) -> float:
        now = clock()
        per_user = max((rate_at(now) or 0.0) / users, 1e-6)
        gap = rng.expovariate(per_user) if process == "poisson" else 1.0 / per_user
        due = max(getattr(user, "_next_arrival_s", now), now - gap) + gap
        user._next_arrival_s = due
        return max(0.0, due - now)

    return wait
