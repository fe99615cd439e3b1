"""Load shapes as plain functions of time (no Locust here; loadtest/locust_shape.py adapts them).

A shape answers, for `t` seconds into the run: how many users should be running (`target`),
which load step this is (`stage_at`, for the throughput-vs-latency plot), and, for arrival-rate
shapes, how many requests per second all users together should start (`rate_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True)
class Target:
    users: int
    spawn_rate: float  # users started (or stopped) per second on the way to `users`


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def rate_at(self, t: float) -> float | None:
        """Requests per second to start at time t (None: closed loop, users go back to back)."""
        return None


class Constant(_Shape):
    kind: Literal["constant"] = Field(description="A fixed number of concurrent users.")
    users: int = Field(ge=1, description="Concurrent users, each sending back to back.")
    duration_s: float = Field(60, gt=0, description="How long to run.")

    def target(self, t: float) -> Target | None:
        return Target(self.users, self.users) if t < self.duration_s else None

    def stage_at(self, t: float) -> int:
        return 0

    def stage_names(self) -> list[str]:
        return [f"{self.users} users"]


class Ramp(_Shape):
    kind: Literal["ramp"] = Field(description="Users grow linearly from start to end.")
    start_users: int = Field(1, ge=1, description="Users at the start.")
    end_users: int = Field(ge=1, description="Users at the end.")
    duration_s: float = Field(60, gt=0, description="How long the ramp takes.")
    stages: int = Field(5, ge=1, description="Equal time slices reported as load steps.")

    def users_at(self, t: float) -> int:
        share = min(max(t / self.duration_s, 0.0), 1.0)
        return round(self.start_users + (self.end_users - self.start_users) * share)

    def target(self, t: float) -> Target | None:
        if t >= self.duration_s:
            return None
        slope = abs(self.end_users - self.start_users) / self.duration_s
        return Target(self.users_at(t), max(slope * 2, 1.0))

    def stage_at(self, t: float) -> int:
        return min(int(t / self.duration_s * self.stages), self.stages - 1)

    def stage_names(self) -> list[str]:
        step = self.duration_s / self.stages
        return [
            f"{self.users_at(i * step)}-{self.users_at((i + 1) * step)} users"
            for i in range(self.stages)
        ]


class Steps(_Shape):
    kind: Literal["steps"] = Field(description="Hold each user count for step_s seconds.")
    users: list[int] = Field(min_length=1, description="User count of each step, in order.")
    step_s: float = Field(30, gt=0, description="How long each step lasts.")
    spawn_rate: float = Field(10, gt=0, description="Users started per second between steps.")

    @model_validator(mode="after")
    def _positive(self) -> Steps:
        if min(self.users) < 1:
            raise ValueError("every step needs at least one user")
        return self

    def target(self, t: float) -> Target | None:
        if t >= self.step_s * len(self.users):
            return None
        return Target(self.users[self.stage_at(t)], self.spawn_rate)

    def stage_at(self, t: float) -> int:
        return min(int(t // self.step_s), len(self.users) - 1)

    def stage_names(self) -> list[str]:
        return [f"{u} users" for u in self.users]


class Spike(_Shape):
    kind: Literal["spike"] = Field(description="A base load with a burst in the middle.")
    base_users: int = Field(ge=1, description="Users before and after the spike.")
    spike_users: int = Field(ge=1, description="Users during the spike.")
    spike_at_s: float = Field(ge=0, description="When the spike starts.")
    spike_s: float = Field(gt=0, description="How long the spike lasts.")
    duration_s: float = Field(gt=0, description="Total run time.")
    spawn_rate: float = Field(50, gt=0, description="Users started per second into the spike.")

    @model_validator(mode="after")
    def _fits(self) -> Spike:
        if self.spike_at_s + self.spike_s > self.duration_s:
            raise ValueError("the spike ends after the run; raise duration_s or move spike_at_s")
        return self

    def target(self, t: float) -> Target | None:
        if t >= self.duration_s:
            return None
        users = self.spike_users if self.stage_at(t) == 1 else self.base_users
        return Target(users, self.spawn_rate)

    def stage_at(self, t: float) -> int:
        if t < self.spike_at_s:
            return 0
        return 1 if t < self.spike_at_s + self.spike_s else 2

    def stage_names(self) -> list[str]:
        return ["before spike", "spike", "after spike"]


class ArrivalRate(_Shape):
    """Open-loop arrivals: requests start at a set rate whatever their latency, as long as
    `users` concurrent requests are enough to carry it (the summary reports the achieved rate)."""

    kind: Literal["arrival_rate"] = Field(description="Constant request arrival rate(s).")
    rates_rps: list[float] = Field(
        min_length=1, description="Arrival rate of each step in requests/s (one entry: constant)."
    )
    step_s: float = Field(60, gt=0, description="How long each rate is held.")
    users: int = Field(
        32, ge=1, description="Concurrent users sharing the rate (the cap on requests in flight)."
    )
    process: Literal["poisson", "uniform"] = Field(
        "poisson", description="poisson: exponential gaps (real traffic); uniform: even gaps."
    )

    @model_validator(mode="after")
    def _positive(self) -> ArrivalRate:
        if min(self.rates_rps) <= 0:
            raise ValueError("arrival rates must be positive requests per second")
        return self

    def target(self, t: float) -> Target | None:
        if t >= self.step_s * len(self.rates_rps):
            return None
        return Target(self.users, self.users)

    def rate_at(self, t: float) -> float | None:
        return self.rates_rps[self.stage_at(t)]

    def stage_at(self, t: float) -> int:
        return min(int(t // self.step_s), len(self.rates_rps) - 1)

    def stage_names(self) -> list[str]:
        return [f"{r:g} req/s" for r in self.rates_rps]


LoadShape = Annotated[Constant | Ramp | Steps | Spike | ArrivalRate, Field(discriminator="kind")]


def shape_duration(shape: LoadShape) -> float:
    if isinstance(shape, Steps):
        return shape.step_s * len(shape.users)
    if isinstance(shape, ArrivalRate):
        return shape.step_s * len(shape.rates_rps)
    return shape.duration_s


def stage_bounds(
    shape: LoadShape, duration_s: float, resolution_s: float = 0.05
) -> list[tuple[float, float]]:
    """[start, end) of every stage within the first `duration_s` seconds (stages the run never
    reaches get an empty span at its end)."""
    names = shape.stage_names()
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    steps = int(duration_s / resolution_s) + 1
    for i in range(steps):
        t = min(i * resolution_s, duration_s)
        stage = shape.stage_at(t)
        starts.setdefault(stage, t)
        ends[stage] = min(t + resolution_s, duration_s)
    return [(starts.get(i, duration_s), ends.get(i, duration_s)) for i in range(len(names))]
