"""Locust users for any OpenAI-compatible endpoint (Tandem, vLLM, TGI, ...).

`make_user_class` binds a planner (what to send), a recorder (what was measured) and a wait
time (closed loop or arrival rate) into a User class; each task sends one request, measures
it, records it and reports it as Locust request events (loadtest/events.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gevent
import requests
from locust import User, task

from loadtest.client import send
from loadtest.events import report
from loadtest.pacing import WaitTime
from loadtest.plan import RequestPlanner
from loadtest.records import Recorder


class OpenAIUser(User):
    abstract = True
    planner: ClassVar[RequestPlanner]
    recorder: ClassVar[Recorder]
    elapsed_s: ClassVar[staticmethod[[], float]]
    initial_delay_s: ClassVar[staticmethod[[], float]]
    headers: ClassVar[dict[str, str]]

    def on_start(self) -> None:
        self._session = requests.Session()
        self._session.headers.update(self.headers)
        delay = self.initial_delay_s()
        if delay > 0:
            gevent.sleep(delay)

    def on_stop(self) -> None:
        self._session.close()

    @task
    def one_request(self) -> None:
        planned = self.planner.next()
        started = self.elapsed_s()
        outcome = send(self._session, self.host or "", planned, self.planner.workload)
        self.recorder.add(started, planned, outcome)
        report(self.environment.events.request.fire, planned, outcome)


def make_user_class(
    planner: RequestPlanner,
    recorder: Recorder,
    wait_time: WaitTime,
    elapsed_s: Callable[[], float],
    api_key: str | None = None,
    initial_delay_s: Callable[[], float] = lambda: 0.0,
) -> type[OpenAIUser]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    attrs: dict[str, Any] = {
        "abstract": False,
        "planner": planner,
        "recorder": recorder,
        "wait_time": wait_time,  # called as a method: it receives the user
        "elapsed_s": staticmethod(elapsed_s),
        "initial_delay_s": staticmethod(initial_delay_s),
        "headers": headers,
    }
    return type("WorkloadUser", (OpenAIUser,), attrs)
