"""Server-sent events, decoded incrementally from the bytes of a streaming response."""

from __future__ import annotations


class SSEDecoder:
    """feed() bytes as they arrive; get back the `data` payload of every complete event.

    Events end at a blank line; several `data:` lines of one event join with newlines;
    comment lines (starting with ':') and other fields are ignored."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes | str) -> list[str]:
        text = chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events: list[str] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line == "":
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (a cut-off stream)."""
        return bool(self._buffer.strip() or self._data)
