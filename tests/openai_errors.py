"""The openai client's errors, as the tests read them."""

from __future__ import annotations

from typing import Any

import openai


def error_body(error: openai.APIError) -> dict[str, Any]:
    """The error's JSON body (the client types it as any object; ours are JSON objects)."""
    assert isinstance(error.body, dict), error.body
    return error.body
