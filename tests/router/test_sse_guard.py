"""StreamGuard: an event stream that is cut off ends with an error event, never clean."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from router.sse_guard import StreamGuard

SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]


def app_sending(parts: list[bytes], final: bool, fail: bool = False, headers=SSE) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if fail:
            raise ConnectionError("the replica died")
        if final:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def run(app: Any) -> bytes:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def main() -> None:
        await StreamGuard(app)({"type": "http"}, receive, send)

    with contextlib.suppress(ConnectionError):  # the app's own failure, after the guard
        asyncio.run(main())
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert bodies and not bodies[-1]["more_body"], "the response must be finished"
    return b"".join(m["body"] for m in bodies)


def last_event(body: bytes) -> bytes:
    return [e for e in body.split(b"\n\n") if e][-1]


CHUNK = b'data: {"choices":[{"text":"hi"}]}\n\n'


def test_a_finished_stream_passes_untouched():
    assert run(app_sending([CHUNK, b"data: [DONE]\n\n"], final=True)) == CHUNK + b"data: [DONE]\n\n"
    error = b'data: {"error":{"message":"bad"}}\n\n'
    assert run(app_sending([CHUNK, error], final=True)) == CHUNK + error


@pytest.mark.parametrize("fail", [True, False])
def test_a_stream_cut_off_gets_an_error_event(fail: bool):
    body = run(app_sending([CHUNK, CHUNK[:10]], final=False, fail=fail))
    error = json.loads(last_event(body).removeprefix(b"data: "))["error"]
    assert error["code"] == "stream_cut_off" and body.startswith(CHUNK + CHUNK[:10])


def test_a_stream_ended_cleanly_without_done_gets_an_error_event():
    body = run(app_sending([CHUNK, b"data: [DO", b"NE]\n\n", CHUNK], final=True))
    assert last_event(body).startswith(b'data: {"error"')
    done_split = run(app_sending([CHUNK, b"data: [DO", b"NE]\n\n"], final=True))
    assert last_event(done_split) == b"data: [DONE]"


def test_other_responses_are_not_touched():
    json_headers = [(b"content-type", b"application/json")]
    assert run(app_sending([b'{"a":', b"1}"], final=True, headers=json_headers)) == b'{"a":1}'
