"""What one request measured: TTFT, inter-token latency, time per output token, end-to-end
latency and tokens/s, and whether it failed (HTTP error, error chunk, truncated stream).

Pure: the caller passes timestamps (seconds, any monotonic clock) and payloads.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

DONE = "[DONE]"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None
    e2e_s: float
    ttft_s: float | None  # None when not streamed or nothing was generated
    itl_s: tuple[float, ...]  # gaps between consecutive content chunks
    output_tokens: int
    prompt_tokens: int | None

    @property
    def tpot_s(self) -> float | None:
        """Decode time per output token after the first: (e2e - ttft) / (tokens - 1)."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.ok or self.e2e_s <= 0 or self.output_tokens == 0:
            return None
        return self.output_tokens / self.e2e_s


def failed(error: str, start: float, now: float) -> Outcome:
    return Outcome(False, error, now - start, None, (), 0, None)


@dataclass
class StreamTracker:
    """Follows one SSE response: on_data() per event payload, then finish()."""

    start: float
    _content_times: list[float] = field(default_factory=list)
    _finished: bool = False
    _done: bool = False
    _error: str | None = None
    _usage: dict[str, Any] | None = None

    def on_data(self, data: str, now: float) -> None:
        if self._error is not None:
            return
        if data.strip() == DONE:
            self._done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            self._error = f"unparsable chunk: {data[:200]!r}"
            return
        if not isinstance(chunk, dict):
            self._error = f"unexpected chunk: {data[:200]!r}"
        elif "error" in chunk:
            self._error = f"error chunk: {_error_message(chunk)}"
        else:
            self._on_chunk(chunk, now)

    def finish(self, now: float) -> Outcome:
        """The stream closed at `now`; a stream without [DONE] or a finish_reason failed."""
        error = self._error
        if error is None and not self._done:
            error = "truncated stream: it closed before data: [DONE]"
        elif error is None and not self._finished:
            error = "truncated stream: [DONE] came before any finish_reason"
        times = self._content_times
        ttft = times[0] - self.start if times else None
        gaps = tuple(b - a for a, b in itertools.pairwise(times))
        usage = self._usage or {}
        tokens = usage.get("completion_tokens", len(times))
        return Outcome(
            error is None, error, now - self.start, ttft, gaps, tokens, usage.get("prompt_tokens")
        )

    def _on_chunk(self, chunk: dict[str, Any], now: float) -> None:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if _content(choice):
                self._content_times.append(now)
            if choice.get("finish_reason") is not None:
                self._finished = True


def whole_response(status: int, body: str, start: float, now: float) -> Outcome:
    """A non-streamed response (or any response with an error status)."""
    try:
        payload = json.loads(body) if body else {}
    except json.JSONDecodeError:
        payload = {}
    if status != 200:
        described = isinstance(payload, dict) and ("error" in payload or "message" in payload)
        message = _error_message(payload) if described else body[:200]
        return failed(f"HTTP {status}: {message}", start, now)
    if not isinstance(payload, dict) or "error" in payload or not payload.get("choices"):
        return failed(f"bad response body: {body[:200]!r}", start, now)
    if any(c.get("finish_reason") is None for c in payload["choices"]):
        return failed("response has a choice without finish_reason", start, now)
    usage = payload.get("usage") or {}
    tokens = usage.get("completion_tokens", 0)
    return Outcome(True, None, now - start, None, (), tokens, usage.get("prompt_tokens"))


def _content(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta") or {}
    return bool(delta.get("content"))


def _error_message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or payload.get("message") or payload)
