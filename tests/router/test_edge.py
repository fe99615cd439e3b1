"""EdgeGuard as an ASGI middleware: auth before the body, size cap, body deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from typing import Any

import pytest

from router.auth import ApiKeyAuth
from router.edge import BodyLimits, EdgeGuard

LIMITS = BodyLimits(max_bytes=1000, read_timeout_s=0.3)


class Recorder:
    """An ASGI app that reads its whole body and answers 200 with its size."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def scope(path: str = "/v1/completions", **headers: str) -> dict[str, Any]:
    items = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": path, "headers": items}


class Client:
    """Feeds body chunks (None: stall forever) and records what the server sent."""

    def __init__(self, chunks: list[bytes | None]) -> None:
        self.chunks = list(chunks)
        self.received = 0
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            await asyncio.Event().wait()  # a client that sent everything waits for the reply
        chunk = self.chunks.pop(0)
        if chunk is None:
            await asyncio.Event().wait()
        self.received += 1
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def error(self) -> dict[str, Any]:
        return json.loads(self.sent[1]["body"])["error"]

    def header(self, name: bytes) -> bytes | None:
        return dict(self.sent[0]["headers"]).get(name)


def serve(guard: EdgeGuard, client: Client, request_scope: dict[str, Any]) -> float:
    start = time.monotonic()
    asyncio.run(asyncio.wait_for(guard(request_scope, client.receive, client.send), 5))
    return time.monotonic() - start


def guard(app: Recorder, keys: tuple[str, ...] = ()) -> EdgeGuard:
    auth = ApiKeyAuth(keys)
    return EdgeGuard(app, LIMITS, auth.check if auth.enabled else None)


def test_a_body_is_read_whole_and_replayed_to_the_app():
    app = Recorder()
    client = Client([b"a" * 400, b"b" * 400])
    serve(guard(app), client, scope(content_length="800"))
    assert client.status == 200 and app.bodies == [b"a" * 400 + b"b" * 400]


def test_no_key_is_refused_before_any_body_is_read():
    app = Recorder()
    client = Client([None])  # a body that would never arrive
    elapsed = serve(guard(app, ("k",)), client, scope(content_length="10"))
    assert client.status == 401 and client.received == 0 and elapsed < LIMITS.read_timeout_s
    assert client.error["type"] == "authentication_error" and not app.bodies
    assert client.header(b"www-authenticate") == b"Bearer"
    ok = Client([b"{}"])
    serve(guard(app, ("k",)), ok, scope(authorization="Bearer k", content_length="2"))
    assert ok.status == 200


def test_the_health_route_needs_no_key():
    client = Client([b""])
    serve(guard(Recorder(), ("k",)), client, scope("/health"))
    assert client.status == 200


def test_a_declared_oversize_body_is_refused_unread():
    client = Client([None])
    serve(guard(Recorder()), client, scope(content_length="1001"))
    assert client.status == 413 and client.received == 0
    assert client.error["code"] == "request_too_large"
    assert client.header(b"connection") == b"close"


def test_a_chunked_body_is_cut_off_past_the_limit():
    client = Client([b"x" * 600, b"x" * 600, None])  # no Content-Length
    app = Recorder()
    serve(guard(app), client, scope())
    assert client.status == 413 and client.received == 2 and not app.bodies


def test_a_slow_body_times_out_with_408():
    client = Client([b"x", None])
    elapsed = serve(guard(Recorder()), client, scope(content_length="100"))
    assert client.status == 408 and client.error["code"] == "request_timeout"
    assert LIMITS.read_timeout_s <= elapsed < LIMITS.read_timeout_s + 0.5


@pytest.mark.parametrize("value", ["-1", "ten", "1e3"])
def test_a_malformed_content_length_is_a_400(value: str):
    client = Client([None])
    serve(guard(Recorder()), client, scope(content_length=value))
    assert client.status == 400
