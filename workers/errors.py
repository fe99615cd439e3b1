"""Errors the engine raises at its boundary; the router maps them to HTTP statuses."""

from __future__ import annotations

from adapters.errors import AdapterLoadError, AdapterNotFoundError

__all__ = ["AdapterLoadError", "AdapterNotFoundError", "EngineDeadError", "RequestFailedError"]


class EngineDeadError(RuntimeError):
    """The engine's step loop stopped on an error; the replica must be restarted (HTTP 503)."""


class RequestFailedError(RuntimeError):
    """One request failed inside the engine (a non-finite logit row, an error while it was
    scheduled, drafted or run); the engine and every other request go on (HTTP 500). The
    message is safe to show a client: no traceback, path or process detail."""

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (RequestFailedError, (self.request_id, self.message))
