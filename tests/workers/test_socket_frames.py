"""FrameReader (workers/socket_frames.py) reads what multiprocessing's Connection writes,
however the bytes are cut on the way: each message once, whole, in order; EOFError once the
writer closed. DeltaStream and deliver (workers/delta_streams.py): what ProcessEngine's
streams are made of."""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import socket
import struct
from multiprocessing.connection import Connection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.delta_streams import DeltaStream, deliver
from workers.protocol import FinishReason, TokenDelta
from workers.socket_frames import FrameReader

MESSAGES = st.lists(
    st.one_of(st.binary(max_size=3000), st.integers(), st.lists(st.text(max_size=5))),
    max_size=6,
)


def framed(messages: list[object]) -> bytes:
    """The bytes Connection.send writes for `messages`."""
    a, b = socket.socketpair()
    with a, b:
        sender = Connection(os.dup(a.fileno()))
        for message in messages:
            sender.send(message)
        sender.close()
        a.close()
        chunks = []
        while chunk := b.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=100, deadline=None)
@given(MESSAGES, st.lists(st.integers(min_value=1, max_value=5000), max_size=20))
def test_messages_come_whole_however_the_bytes_are_cut(
    messages: list[object], cuts: list[int]
) -> None:
    data = framed(messages)
    writer, reader_end = socket.socketpair()
    with writer, reader_end:
        reader = FrameReader(reader_end.fileno())
        got: list[object] = []
        start = 0
        for size in [*cuts, len(data)]:
            piece = data[start : start + size]
            start += len(piece)
            if piece:
                writer.sendall(piece)
                while _readable(reader_end):
                    got.extend(reader.read())
        assert got == messages
        writer.close()
        with pytest.raises(EOFError):
            reader.read()


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_the_long_length_header_and_many_messages_in_one_read() -> None:
    body = pickle.dumps("long", protocol=5)
    long_frame = struct.pack("!i", -1) + struct.pack("!Q", len(body)) + body
    data = framed([1, 2]) + long_frame + framed([3])
    writer, reader_end = socket.socketpair()
    with writer, reader_end:
        writer.sendall(data)
        assert FrameReader(reader_end.fileno()).read() == [1, 2, "long", 3]


def test_a_stream_yields_its_deltas_raises_its_error_and_leaves() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        aborted: list[str] = []
        streams = {"a": DeltaStream(loop, 2), "b": DeltaStream(loop, 1)}
        a = streams["a"].deltas("a", streams, aborted.append)
        b = streams["b"].deltas("b", streams, aborted.append)
        first = TokenDelta("a", 0, (1,))
        deliver(streams, ["a", "gone"], [first, first])  # before anyone waits
        assert await anext(a) is first
        waiting = asyncio.ensure_future(anext(a))
        await asyncio.sleep(0)
        done = TokenDelta("a", 1, (2,), finish_reason=FinishReason.STOP)
        done_too = TokenDelta("a", 0, (), finish_reason=FinishReason.LENGTH)
        deliver(streams, ["a", "b", "a"], [done, RuntimeError("b failed"), done_too])
        assert await waiting is done
        assert await anext(a) is done_too
        with pytest.raises(StopAsyncIteration):
            await anext(a)  # both samples finished
        with pytest.raises(RuntimeError, match="b failed"):
            await anext(b)
        assert streams == {} and aborted == ["b"]  # b left unfinished

        c = DeltaStream(loop, 1)
        streams["c"] = c
        reader = asyncio.ensure_future(anext(c.deltas("c", streams, aborted.append)))
        await asyncio.sleep(0)
        reader.cancel()  # the caller went away while it waited
        deliver(streams, ["c"], [first])  # its cancelled waiter is left alone
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(main())
