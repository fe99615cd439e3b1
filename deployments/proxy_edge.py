"""The edge limits inside Serve's HTTP proxy, installed through Serve's own hook: the proxy
process calls `proxy_middlewares` (named by RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, read
when the proxy starts) and wraps its ASGI app in what it returns.

Why in the proxy: Serve's proxy routes a request to the Router replica as soon as its
headers are in, and the replica pulls the body from the proxy as it reads. A client sending
its body at a byte per second would hold one of the Router's `max_ongoing_requests` for as
long as it liked; enough of them and no one else gets in. Here the proxy reads the whole
body (size cap, deadline: router/edge.py) before the request is routed, so a slow client
costs the proxy a coroutine and never a replica.

Uvicorn (the proxy's server) has no header-read timeout: a connection that never finishes
its headers stays open for good. `HeaderDeadline` closes a connection whose request headers
are not complete `header_timeout_s` after it opened, or after its previous response ended.

The proxy is also the process left standing when a Router replica stops or dies: there,
`StreamGuard` (router/sse_guard.py) ends a cut-off event stream with an error event, and
`NoRouteIsUnavailable` answers 503 with Retry-After, not Serve's plain-text 404, while no
app serves the path (the app is starting, or draining on shutdown).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from starlette.middleware import Middleware
from uvicorn.protocols.utils import get_remote_addr

from deployments.router_settings import EdgeArgs, RouterArgs
from router.auth import ApiKeyAuth
from router.edge import ASGIApp, EdgeGuard, Message, Receive, Scope, Send, header, send_error
from router.errors import overloaded
from router.sse_guard import StreamGuard

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "deployments.proxy_edge:proxy_middlewares"

# the app's health route and Serve's own (KubeRay probes /-/healthz and /-/routes)
OPEN_PATHS = ("/health", "/-/healthz", "/-/routes")

Peer = tuple[str, int]


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback: edge limits from the environment (EdgeArgs.from_env), and the
    API keys from the Router's default key variable (TANDEM_API_KEYS), so a request without
    a valid key is refused before its body is read. Keys given only in config.yaml `args`
    are checked by the Router, after the proxy read the body under its limits."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol  # the class Serve's uvicorn uses

    edge = EdgeArgs.from_env()
    deadline = HeaderDeadline(edge.header_timeout_s)
    deadline.install(AutoHTTPProtocol)
    auth = ApiKeyAuth(env_api_keys())
    check = auth.check if auth.enabled else None
    # the first wraps Serve's app, the last is outermost (it sees a request's headers first)
    return [
        Middleware(NoRouteIsUnavailable),
        Middleware(StreamGuard),
        Middleware(EdgeGuard, limits=edge.body_limits(), check_auth=check, open_paths=OPEN_PATHS),
        Middleware(HeaderDeadlineMiddleware, deadline=deadline),
    ]


def env_api_keys() -> list[str]:
    name = RouterArgs.model_fields["api_keys_env"].default
    return [k.strip() for k in os.environ.get(name, "").split(",") if k.strip()]


class HeaderDeadline:
    """Per connection (keyed by the client's address): a timer armed when the connection
    opens or a response ends, disarmed when the next request's headers are complete."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._transports: dict[Peer, asyncio.BaseTransport] = {}
        self._timers: dict[Peer, asyncio.TimerHandle] = {}
        self.num_closed = 0

    def install(self, protocol_class: type[asyncio.Protocol]) -> None:
        """Hook `protocol_class`'s connection_made / connection_lost (once per class)."""
        if getattr(protocol_class, "_tandem_header_deadline", None) is not None:
            return
        made: Callable[..., Any] = protocol_class.connection_made
        lost: Callable[..., Any] = protocol_class.connection_lost
        deadline = self

        # `self`: they become the class's methods (the protocol instance)
        def connection_made(self: Any, transport: asyncio.BaseTransport) -> None:
            made(self, transport)
            self._tandem_peer = deadline.opened(transport)  # the peer is gone once closed

        def connection_lost(self: Any, exc: Exception | None) -> None:
            lost(self, exc)
            peer = getattr(self, "_tandem_peer", None)
            if peer is not None:
                deadline.closed(peer, self.transport)

        protocol_class.connection_made = connection_made  # type: ignore[method-assign]
        protocol_class.connection_lost = connection_lost  # type: ignore[method-assign]
        protocol_class._tandem_header_deadline = self  # type: ignore[attr-defined]

    def opened(self, transport: asyncio.BaseTransport) -> Peer | None:
        peer = _peer(transport)
        if peer is not None:
            self._transports[peer] = transport
            self._arm(peer)
        return peer

    def closed(self, peer: Peer, transport: asyncio.BaseTransport) -> None:
        if self._transports.get(peer) is transport:
            del self._transports[peer]
            self._disarm(peer)

    def request_started(self, peer: Peer) -> None:
        self._disarm(peer)

    def response_finished(self, peer: Peer) -> None:
        if peer in self._transports:
            self._arm(peer)

    def _arm(self, peer: Peer) -> None:
        self._disarm(peer)
        loop = asyncio.get_running_loop()
        self._timers[peer] = loop.call_later(self.timeout_s, self._expire, peer)

    def _disarm(self, peer: Peer) -> None:
        timer = self._timers.pop(peer, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, peer: Peer) -> None:
        self._timers.pop(peer, None)
        transport = self._transports.get(peer)
        if transport is not None and not transport.is_closing():
            self.num_closed += 1
            transport.close()


class HeaderDeadlineMiddleware:
    def __init__(self, app: ASGIApp, deadline: HeaderDeadline) -> None:
        self.app = app
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client:
            await self.app(scope, receive, send)
            return
        peer = (str(client[0]), int(client[1]))
        self.deadline.request_started(peer)

        async def send_tracked(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.deadline.response_finished(peer)

        await self.app(scope, receive, send_tracked)


class NoRouteIsUnavailable:
    """Serve's proxy answers a path no app serves with a plain-text 404 (the app's own 404s
    are JSON). With the app at "/", that means it is not deployed yet or being deleted:
    503 with Retry-After tells a client to come back."""

    def __init__(self, app: ASGIApp, retry_after_s: float = 1.0) -> None:
        self.app = app
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/-/"):
            await self.app(scope, receive, send)
            return
        replaced = False

        async def mapped_send(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and _no_route(message):
                replaced = True
                error = overloaded("no app serves this path now; retry", self.retry_after_s, 503)
                await send_error(send, error)
            elif not replaced:
                await send(message)

        await self.app(scope, receive, mapped_send)


def _no_route(start: Message) -> bool:
    content_type = header({"headers": start.get("headers", ())}, b"content-type") or ""
    return start["status"] == 404 and content_type.startswith("text/plain")


def _peer(transport: Any) -> Peer | None:
    address = get_remote_addr(transport)  # what uvicorn puts in scope["client"]
    return (str(address[0]), int(address[1])) if address else None
