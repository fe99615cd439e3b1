"""Reading a multiprocessing Connection's messages from an event loop, one read at a time.

ProcessEngine's loop is told when the core's socket is readable; Connection.poll() and
recv() would then cost a selector set up and torn down per poll, and two reads and a copy
per message. FrameReader instead takes what the socket holds in one os.read and returns the
messages it completes: a step's message usually arrives whole, in one read. The framing is
Connection's own (a 4-byte big-endian signed length, or -1 then an 8-byte length, then the
pickle), so the other end sends with Connection.send or send_bytes.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

READ_SIZE = 1 << 18  # bytes per read; a longer message takes several
_LONG = -1  # the length that says an 8-byte length follows


class FrameReader:
    """Whole messages from `fd`, which the caller keeps open; read() only when readable."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()  # the start of a message not yet whole

    def read(self) -> list[Any]:
        """One read of what is there: the messages it completed, in order (maybe none).
        EOFError once the other end closed the socket."""
        data: bytes | bytearray = os.read(self._fd, READ_SIZE)
        if not data:
            raise EOFError("the socket was closed")
        if self._pending:
            self._pending += data
            data = self._pending
        messages, used = _whole_messages(data)
        if data is self._pending:
            del self._pending[:used]
        elif used < len(data):
            self._pending = bytearray(data[used:])
        return messages


def _whole_messages(data: bytes | bytearray) -> tuple[list[Any], int]:
    """The messages that lie whole in `data`, and how many bytes they took."""
    messages: list[Any] = []
    start, end = 0, len(data)
    with memoryview(data) as view:
        while end - start >= 4:
            size = int.from_bytes(view[start : start + 4], "big", signed=True)
            body = start + 4
            if size == _LONG:
                if end - body < 8:
                    break
                size = int.from_bytes(view[body : body + 8], "big")
                body += 8
            if end - body < size:
                break
            messages.append(pickle.loads(view[body : body + size]))
            start = body + size
    return messages, start
