"""Reading a stream: SSE framing, what each measure is, what counts as a failure, and the
Locust events a measured request becomes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from loadtest.events import RequestFailed, report
from loadtest.measure import Outcome, StreamTracker, whole_response
from loadtest.plan import PlannedRequest
from loadtest.sse import SSEDecoder


def _chunk(text: str | None = None, finish: str | None = None, chat: bool = False) -> str:
    choice: dict = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {} if text is None else {"content": text}
    else:
        choice["text"] = text or ""
    return json.dumps({"choices": [choice]})


def test_sse_events_survive_any_split_of_the_bytes() -> None:
    stream = b'data: {"a": 1}\r\n\r\n: keep-alive\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events = []
        for i in range(0, len(stream), size):
            events += decoder.feed(stream[i : i + size])
        assert events == ['{"a": 1}', "line1\nline2", "[DONE]"]
        assert not decoder.pending
    cut = SSEDecoder()
    assert cut.feed(b'data: {"partial') == [] and cut.pending


def test_timings_of_a_clean_stream() -> None:
    tracker = StreamTracker(start=10.0)
    tracker.on_data(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}), 10.1)
    for t, text in ((10.5, "a"), (10.7, "b"), (11.3, "c")):
        tracker.on_data(_chunk(text, chat=True), t)
    tracker.on_data(_chunk(finish="length", chat=True), 11.3)
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    tracker.on_data(json.dumps({"choices": [], "usage": usage}), 11.3)
    tracker.on_data("[DONE]", 11.4)
    outcome = tracker.finish(11.5)
    assert outcome.ok and outcome.error is None
    assert outcome.ttft_s == pytest.approx(0.5)  # the role chunk is not a token
    assert outcome.itl_s == pytest.approx((0.2, 0.6))
    assert outcome.e2e_s == pytest.approx(1.5)
    assert (outcome.output_tokens, outcome.prompt_tokens) == (4, 9)  # usage beats chunk count
    assert outcome.tpot_s == pytest.approx((1.5 - 0.5) / 3)
    assert outcome.tokens_per_s == pytest.approx(4 / 1.5)


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([_chunk("a"), json.dumps({"error": {"message": "replica died"}})],
         "error chunk: replica died"),
        ([_chunk("a"), _chunk("b")], "truncated stream: it closed before data: [DONE]"),
        ([_chunk("a"), "[DONE]"], "truncated stream: [DONE] came before any finish_reason"),
        (["{not json"], "unparsable chunk"),
    ],
)  # fmt: skip
def test_broken_streams_are_failures(events: list[str], error: str) -> None:
    tracker = StreamTracker(start=0.0)
    for i, data in enumerate(events):
        tracker.on_data(data, 0.1 * (i + 1))
    outcome = tracker.finish(1.0)
    assert not outcome.ok
    assert outcome.error is not None and outcome.error.startswith(error)
    assert outcome.tokens_per_s is None


def test_whole_responses() -> None:
    body = {"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}}  # fmt: skip
    ok = whole_response(200, json.dumps(body), 0.0, 2.0)
    assert ok.ok and ok.output_tokens == 5 and ok.ttft_s is None and ok.e2e_s == 2.0
    overloaded = whole_response(429, json.dumps({"error": {"message": "busy"}}), 0.0, 0.1)
    assert not overloaded.ok and overloaded.error == "HTTP 429: busy"
    unfinished = {"choices": [{"index": 0, "text": "x", "finish_reason": None}]}
    assert not whole_response(200, json.dumps(unfinished), 0.0, 1.0).ok
    assert whole_response(502, "<html>bad gateway</html>", 0.0, 1.0).error == (
        "HTTP 502: <html>bad gateway</html>"
    )


PLANNED = PlannedRequest("chat", "sql", "sql", "p", 4, 8, True, 0.0, 1.0, False)


def test_a_success_reports_every_measure_as_locust_events() -> None:
    fired: list[dict] = []
    outcome = Outcome(True, None, 2.0, 0.5, (0.25, 0.25, 1.0), 4, 9)
    report(lambda **event: fired.append(event), PLANNED, outcome)
    kinds = Counter(e["request_type"] for e in fired)
    assert kinds == {"e2e": 1, "ttft": 1, "tpot": 1, "itl": 3, "tok/s": 1}
    by_kind = {e["request_type"]: e for e in fired}
    assert by_kind["e2e"]["response_time"] == 2000 and by_kind["e2e"]["response_length"] == 4
    assert by_kind["ttft"]["response_time"] == 500
    assert by_kind["tpot"]["response_time"] == pytest.approx(500)
    assert by_kind["tok/s"]["response_time"] == 2.0
    assert {e["name"] for e in fired} == {"chat stream sql"}
    assert all(e["exception"] is None for e in fired)


def test_a_failure_is_one_failed_e2e_event() -> None:
    fired: list[dict] = []
    failed = Outcome(False, "error chunk: x", 1.0, 0.2, (0.1,), 3, None)
    report(lambda **e: fired.append(e), PLANNED, failed)
    (event,) = fired
    assert event["request_type"] == "e2e"
    assert isinstance(event["exception"], RequestFailed)
    assert str(event["exception"]) == "error chunk: x"
