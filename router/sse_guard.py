"""No event stream ends looking finished when it was cut off (pure ASGI middleware).

An OpenAI stream ends with `data: [DONE]` or with a `data: {"error": ...}` event. When the
process writing it dies mid-stream (a replica stopped or was killed), the server in front
would just end the response, and a client could take the truncated text for the whole
answer. `StreamGuard` sits in that server (Serve's proxy): when an event stream ends, or
its app fails, without either terminal event, it sends an error event first.
"""

from __future__ import annotations

import contextlib
import logging

from router.edge import ASGIApp, Message, Receive, Scope, Send
from router.errors import APIError
from router.sse import DONE, MEDIA_TYPE, event

logger = logging.getLogger(__name__)

_DONE = DONE.strip().encode()
_ERROR = b'data: {"error"'


def stream_cut_off() -> APIError:
    return APIError(
        503,
        "the stream was cut off before it finished (a server process stopped); retry the request",
        "service_unavailable",
        code="stream_cut_off",
    )


class EventTail:
    """Follows an SSE body across chunks; `terminated`: its last event was [DONE] or an
    error."""

    def __init__(self) -> None:
        self._partial = b""
        self._last = b""

    def feed(self, data: bytes) -> None:
        *events, self._partial = (self._partial + data).split(b"\n\n")
        if events:
            self._last = events[-1]

    @property
    def mid_event(self) -> bool:
        return bool(self._partial)

    @property
    def terminated(self) -> bool:
        return not self._partial.strip() and (self._last == _DONE or self._last.startswith(_ERROR))


class StreamGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tail: EventTail | None = None
        finished = False

        async def watched_send(message: Message) -> None:
            nonlocal tail, finished
            if message["type"] == "http.response.start" and _is_event_stream(message):
                tail = EventTail()
            elif message["type"] == "http.response.body" and tail is not None:
                tail.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    finished = True
                    if not tail.terminated:  # ended cleanly but without a terminal event
                        await send({**message, "more_body": True})
                        message = _error_message(tail)
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            if tail is not None and not finished:
                logger.warning("an event stream was cut off; ending it with an error event")
                with contextlib.suppress(OSError):  # the client is gone too: nobody to tell
                    await send(_error_message(tail))


def _is_event_stream(message: Message) -> bool:
    for key, value in message.get("headers", ()):
        if key.lower() == b"content-type":
            return value.split(b";")[0].strip() == MEDIA_TYPE.encode()
    return False


def _error_message(tail: EventTail) -> Message:
    # a half-sent event is closed first, so the error is an event of its own
    body = (b"\n\n" if tail.mid_event else b"") + event(stream_cut_off().body()).encode()
    return {"type": "http.response.body", "body": body, "more_body": False}
