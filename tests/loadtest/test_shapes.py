"""Load shapes over time, their load steps, the Locust adapter that holds them for the set
duration, and arrival-rate pacing."""

from __future__ import annotations

import pytest

from loadtest.pacing import arrival_pacer
from loadtest.shapes import ArrivalRate, Constant, Ramp, Spike, Steps, shape_duration, stage_bounds


def _users(shape: object, times: list[float]) -> list[int | None]:
    return [None if (t := shape.target(s)) is None else t.users for s in times]  # type: ignore[attr-defined]


def test_constant_ramp_steps_and_spike_over_time() -> None:
    assert _users(Constant(kind="constant", users=3, duration_s=10), [0, 9.9, 10]) == [3, 3, None]
    ramp = Ramp(kind="ramp", start_users=1, end_users=9, duration_s=8, stages=4)
    assert _users(ramp, [0, 4, 7.99, 8]) == [1, 5, 9, None]
    assert [ramp.stage_at(t) for t in (0, 2.5, 7.9)] == [0, 1, 3]
    steps = Steps(kind="steps", users=[1, 4, 2], step_s=5)
    assert _users(steps, [0, 5, 14.9, 15]) == [1, 4, 2, None]
    assert steps.stage_names() == ["1 users", "4 users", "2 users"]
    spike = Spike(kind="spike", base_users=2, spike_users=10, spike_at_s=5, spike_s=3,
                  duration_s=12)  # fmt: skip
    assert _users(spike, [4.9, 5, 7.9, 8, 12]) == [2, 10, 10, 2, None]
    assert [spike.stage_at(t) for t in (0, 6, 9)] == [0, 1, 2]


def test_durations_and_stage_bounds() -> None:
    steps = Steps(kind="steps", users=[1, 2, 3], step_s=10)
    assert shape_duration(steps) == 30
    bounds = [edge for span in stage_bounds(steps, 30) for edge in span]
    assert bounds == pytest.approx([0, 10, 10, 20, 20, 30], abs=0.06)
    # a run cut short: the last step gets an empty span at the end
    assert stage_bounds(steps, 15)[2] == (15, 15)
    rate = ArrivalRate(kind="arrival_rate", rates_rps=[1, 2], step_s=30, users=8)
    assert shape_duration(rate) == 60 and rate.rate_at(45) == 2
    assert rate.stage_names() == ["1 req/s", "2 req/s"]


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="arrival rates must be positive"):
        ArrivalRate(kind="arrival_rate", rates_rps=[0], users=1)
    with pytest.raises(ValueError, match="at least one user"):
        Steps(kind="steps", users=[2, 0])


class _User:
    pass


@pytest.mark.parametrize("process", ["poisson", "uniform"])
def test_arrival_pacing_holds_the_rate_across_users(process: str) -> None:
    """Simulated: 4 users with instant requests share 8 req/s; after 50 s about 400 starts."""
    now = [0.0]
    wait = arrival_pacer(lambda t: 8.0, users=4, process=process, clock=lambda: now[0], seed=3)
    users = [_User() for _ in range(4)]
    next_start = [0.0] * 4
    starts = 0
    while True:
        i = min(range(4), key=next_start.__getitem__)
        now[0] = next_start[i]
        if now[0] > 50:
            break
        starts += 1
        next_start[i] = now[0] + wait(users[i])
    assert 360 <= starts <= 440


def test_a_slow_user_does_not_burst_to_catch_up() -> None:
    now = [0.0]
    wait = arrival_pacer(lambda t: 1.0, users=1, process="uniform", clock=lambda: now[0])
    user = _User()
    assert wait(user) == pytest.approx(1.0)
    now[0] = 10.0  # the request took far longer than the 1 s gap
    assert wait(user) == 0.0
    assert wait(user) == pytest.approx(1.0)  # back to the rate, not a burst of nine
