"""Stop strings over streamed text: text that may be the start of a stop string is held back
until the next piece shows whether it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StopMatch:
    """What to send now, and whether a stop string ended the choice."""

    text: str
    stopped: bool


class StopStringMatcher:
    """Feed text pieces in order; each result says what is safe to emit."""

    def __init__(self, stop: Sequence[str], include_stop: bool = False) -> None:
        assert all(stop), "stop strings must be non-empty"
        self._stop = tuple(stop)
        self._include = include_stop
        self._held = ""
        self._stopped = False

    def feed(self, text: str) -> StopMatch:
        assert not self._stopped, "feed after a stop string matched"
        if not self._stop:
            return StopMatch(text, False)
        pending = self._held + text
        hit = self._first_match(pending)
        if hit is not None:
            index, stop = hit
            self._stopped = True
            self._held = ""
            end = index + len(stop) if self._include else index
            return StopMatch(pending[:end], True)
        keep = self._partial_suffix(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return StopMatch(pending[: len(pending) - keep], False)

    def flush(self) -> str:
        """At the end of the sequence, held-back text was no stop string after all."""
        held, self._held = self._held, ""
        return held

    def _first_match(self, text: str) -> tuple[int, str] | None:
        found = [(text.find(s), s) for s in self._stop]
        hits = [(i, s) for i, s in found if i >= 0]
        return min(hits, key=lambda h: h[0]) if hits else None

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop string."""
        best = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best
