"""HTTP errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`.

Raise an `APIError` anywhere in the router; the app turns it into a JSON response with the
right status (or, after streaming began, into a `data: {"error": ...}` event).
"""

from __future__ import annotations

import math
from typing import Any


class APIError(Exception):
    """An error a client should see, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # crosses process boundaries (Ray): rebuild from every field, not just the message
        fields = (self.status, self.message, self.type, self.param, self.code, self.headers)
        return (APIError, fields)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param=param)


def unauthorized(message: str) -> APIError:
    return APIError(
        401,
        message,
        "authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def not_found(message: str, param: str | None = None, code: str = "model_not_found") -> APIError:
    return APIError(404, message, "not_found_error", param=param, code=code)


def overloaded(message: str, retry_after_s: float, status: int = 429) -> APIError:
    """429 (this router's queue is full) or 503 (no replica can take work)."""
    seconds = str(max(1, math.ceil(retry_after_s)))
    kind = "rate_limit_error" if status == 429 else "service_unavailable"
    return APIError(status, message, kind, code=kind, headers={"Retry-After": seconds})


def internal_error(message: str) -> APIError:
    return APIError(500, message, "internal_error", code="internal_error")


def request_failed(request_id: str) -> APIError:
    """A 500 for an error nobody anticipated: only the id, under which the server log has
    the traceback (never the exception's text, which may hold paths or process details)."""
    return internal_error(
        f"the request failed on the server (request id {request_id}); the server log has "
        "the details under this id"
    )
