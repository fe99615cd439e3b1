"""Limits at the HTTP edge, checked before any work (pure ASGI, no framework).

`EdgeGuard` wraps an ASGI app. For each HTTP request it, in order:
1. checks the API key from the headers (401 at once, before a byte of the body is read);
2. refuses a declared Content-Length over the limit (413, body unread);
3. reads the whole body under a deadline, counting bytes as they arrive so a chunked body
   cannot pass the limit either (413), nor take longer than the deadline (408);
then calls the app with the body replayed. Later `receive` calls go to the server again, so
the app still hears a client's disconnect. A refused request's response carries
`Connection: close`: its unread body must not be parsed as the next request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from router.errors import APIError, bad_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AuthCheck = Callable[[str | None], None]  # raises a 401 APIError


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int  # a body over this many bytes is refused with 413
    read_timeout_s: float  # the whole body must arrive within this (408 otherwise)

    def __post_init__(self) -> None:
        assert self.max_bytes > 0 and self.read_timeout_s > 0, self


class ClientGone(Exception):
    """The client disconnected before its body was complete: nobody to answer."""


def payload_too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than {limit} bytes; send a shorter prompt",
        "invalid_request_error",
        code="request_too_large",
    )


def body_timeout(seconds: float) -> APIError:
    return APIError(
        408,
        f"the request body did not arrive within {seconds:g} s; send it at once",
        "invalid_request_error",
        code="request_timeout",
    )


class EdgeGuard:
    """ASGI middleware; `check_auth` (None: no auth here) guards every path not in
    `open_paths`."""

    def __init__(
        self,
        app: ASGIApp,
        limits: BodyLimits,
        check_auth: AuthCheck | None = None,
        open_paths: Iterable[str] = ("/health",),
    ) -> None:
        self.app = app
        self.limits = limits
        self.check_auth = check_auth
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_headers(scope)
            body = await read_body(receive, self.limits)
        except ClientGone:
            return
        except APIError as e:
            await send_error(send, e)
            return
        await self.app(scope, replay(body, receive), send)

    def _check_headers(self, scope: Scope) -> None:
        if self.check_auth is not None and scope["path"] not in self.open_paths:
            self.check_auth(header(scope, b"authorization"))
        declared = declared_length(scope)
        if declared is not None and declared > self.limits.max_bytes:
            raise payload_too_large(self.limits.max_bytes)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def declared_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise bad_request(f"Content-Length {value!r} is not a byte count", None)
    return int(value)


async def read_body(receive: Receive, limits: BodyLimits) -> bytes:
    """The whole body, or APIError 413 / 408, or ClientGone."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_bytes:
                    raise payload_too_large(limits.max_bytes)
                parts.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError as e:
        raise body_timeout(limits.read_timeout_s) from e
    return b"".join(parts)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then defers to the server's `receive`."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def send_error(send: Send, error: APIError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
