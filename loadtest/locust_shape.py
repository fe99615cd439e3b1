"""A workload's load shape as a Locust LoadTestShape, held for the run's set duration."""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.shapes import LoadShape, Target


class WorkloadShape(LoadTestShape):
    """Follows `shape`; if the shape ends before `duration_s`, its last target is held (the run
    lasts the set time); at `duration_s` the test stops."""

    def __init__(self, shape: LoadShape, duration_s: float) -> None:
        super().__init__()
        self.shape = shape
        self.duration_s = duration_s
        self._last: Target | None = None

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= self.duration_s:
            return None
        target = self.shape.target(t) or self._last
        if target is None:
            return None
        self._last = target
        return target.users, target.spawn_rate

    def elapsed_s(self) -> float:
        return self.get_run_time()
