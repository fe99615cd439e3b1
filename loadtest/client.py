"""Send one planned request to an OpenAI-compatible endpoint and measure it (blocking; under
Locust, gevent makes it cooperative)."""

from __future__ import annotations

import time

import requests

from loadtest.bodies import request_body, request_path
from loadtest.measure import Outcome, StreamTracker, failed, whole_response
from loadtest.plan import PlannedRequest
from loadtest.sse import SSEDecoder
from loadtest.workload import Workload

CONNECT_TIMEOUT_S = 10.0


def send(
    session: requests.Session,
    base_url: str,
    planned: PlannedRequest,
    workload: Workload,
) -> Outcome:
    start = time.perf_counter()
    url = base_url.rstrip("/") + request_path(planned)
    body = request_body(planned, workload)
    timeout = (CONNECT_TIMEOUT_S, workload.request_timeout_s)
    try:
        with session.post(url, json=body, stream=planned.stream, timeout=timeout) as response:
            if not planned.stream or response.status_code != 200:
                return whole_response(response.status_code, response.text, start, _now())
            return _read_stream(response, start, workload.request_timeout_s)
    except requests.exceptions.ChunkedEncodingError as e:
        return failed(f"truncated stream: {e}", start, _now())
    except requests.RequestException as e:
        return failed(f"{type(e).__name__}: {e}", start, _now())


def _read_stream(response: requests.Response, start: float, timeout_s: float) -> Outcome:
    tracker = StreamTracker(start)
    decoder = SSEDecoder()
    # chunk_size=None hands over each chunk as it arrives, so timestamps are arrival times
    for chunk in response.iter_content(chunk_size=None):
        now = _now()
        for data in decoder.feed(chunk):
            tracker.on_data(data, now)
        if now - start > timeout_s:
            return failed(f"timeout: still streaming after {timeout_s:g} s", start, now)
    return tracker.finish(_now())


def _now() -> float:
    return time.perf_counter()
