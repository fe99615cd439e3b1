"""ProcessEngine: AsyncEngine's API over an engine that steps in a process of its own
(workers/engine_core.py), so the replica's streaming and the engine never share a GIL.

Measured on the GPU replica with the engine on a thread (AsyncEngine): at 256 streams the
replica's one GIL was saturated, the engine thread holding it about half the time and Ray's
streaming the rest, so the engine ran at half its in-process speed (BENCHMARKS.md, issue 15).

The parent's side costs one socket and no thread: the owning event loop reads the socket
when it is readable (`add_reader`, workers/socket_frames.py) and hands each step's deltas,
which cross as columns (workers/delta_columns.py), to the streams (DeltaStream); a caller
reads its stream through the DeltaFeed `open` returns, a batch at a time. Requests are
validated by the engine itself: `open` returns once the core accepted the request, or
raises its ValueError (so the router can still answer 400). If the core dies, every stream
and call fails with EngineDeadError and `is_alive` turns false (the replica's health check).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from workers.config import EngineConfig
from workers.core_messages import (
    Abort,
    Accepted,
    Add,
    Call,
    Dead,
    DraftAsk,
    DraftReply,
    Failed,
    Ready,
    Reply,
    Step,
    Stop,
)
from workers.delta_feed import DeltaFeed
from workers.delta_streams import DEAD_MESSAGE, DeltaStream, deliver
from workers.errors import EngineDeadError
from workers.protocol import AdapterInfo, GenerateRequest, ReplicaStats
from workers.socket_frames import FrameReader
from workers.spec.proposers import RemoteClient
from workers.step_items import StepItems

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent  # holds the `workers` package
STOP_WAIT_S = 10.0


class ProcessEngine:
    """Create it on the event loop that serves it: it reads the socket there, and its
    requests and calls are made there."""

    def __init__(
        self,
        config: EngineConfig,
        remote_draft: RemoteClient | None = None,
        start_timeout_s: float = 900.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._remote_draft = remote_draft
        self._streams: dict[str, DeltaStream] = {}
        self._accepting: dict[str, asyncio.Future[None]] = {}
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._call_ids = itertools.count()
        self._error: BaseException | None = None
        self._process, self._conn = _start_core()
        self._conn.send((config, remote_draft is not None))
        ready = self._wait_ready(start_timeout_s)
        self._stats: ReplicaStats = ready.stats
        self._adapters: list[AdapterInfo] = ready.adapters
        self._reader = FrameReader(self._conn.fileno())
        self._loop.add_reader(self._conn.fileno(), self._on_readable)

    # -- the API AsyncEngine has ----------------------------------------------------------------

    async def open(self, spec: GenerateRequest) -> DeltaFeed:
        """Queue the request once the engine accepted it (else its ValueError); iterate the
        result for its deltas, or take them a batch at a time (router/coalesce.py). Closing
        it early aborts the request."""
        self._check_alive()
        self._check_loop()
        if spec.request_id in self._streams:
            raise ValueError(f"request id {spec.request_id!r} is already in use")
        stream = DeltaStream(self._loop, spec.sampling.n)
        accepted = self._loop.create_future()
        self._streams[spec.request_id] = stream
        self._accepting[spec.request_id] = accepted
        try:
            self._send(Add(spec))
            await accepted
        except BaseException:
            self._streams.pop(spec.request_id, None)
            self._accepting.pop(spec.request_id, None)
            if accepted.cancelled() or not accepted.done() or accepted.exception() is None:
                self.abort(spec.request_id)  # the caller left while the core took it
            raise
        return DeltaFeed(stream, spec.request_id, self._streams, self.abort)

    def abort(self, request_id: str) -> None:
        """Cancel a request; its KV blocks return to the pool in the core's next turn."""
        if self.is_alive:
            self._send(Abort(request_id))

    def stats(self) -> ReplicaStats:
        return self._stats

    async def load_adapter(self, name: str, path: str, pinned: bool = False) -> AdapterInfo:
        return await self._call("load_adapter", name, path, pinned)

    async def unload_adapter(self, name: str) -> None:
        await self._call("unload_adapter", name)

    def list_adapters(self) -> list[AdapterInfo]:
        return list(self._adapters)

    @property
    def is_alive(self) -> bool:
        return self._error is None and self._process.poll() is None

    def shutdown(self) -> None:
        if self._process.poll() is None:
            if self._error is None:
                with contextlib.suppress(EngineDeadError):
                    self._send(Stop())
            try:
                self._process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close(EngineDeadError("the engine was shut down"))

    # -- caller side ----------------------------------------------------------------------------

    async def _call(self, method: str, *args: Any) -> Any:
        self._check_alive()
        self._check_loop()
        call_id = next(self._call_ids)
        future = self._loop.create_future()
        self._calls[call_id] = future
        self._send(Call(call_id, method, args))
        try:
            return await future
        finally:
            self._calls.pop(call_id, None)

    def _send(self, message: object) -> None:
        try:
            self._conn.send(message)
        except OSError as e:
            self._close(EngineDeadError(DEAD_MESSAGE))
            raise EngineDeadError(DEAD_MESSAGE) from e

    def _check_loop(self) -> None:
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a ProcessEngine serves the event loop it was created on")

    def _check_alive(self) -> None:
        if not self.is_alive:
            raise EngineDeadError(DEAD_MESSAGE)

    # -- the owning loop: the core's messages ---------------------------------------------------

    def _on_readable(self) -> None:
        try:
            messages = self._reader.read()
        except (EOFError, OSError):
            logger.error("the engine core exited (status %s)", self._process.poll())
            self._close(EngineDeadError(DEAD_MESSAGE))
            return
        for message in messages:
            self._dispatch(message)

    def _dispatch(self, message: Any) -> None:
        match message:
            case Step(items=items, stats=stats):
                if stats is not None:  # else unchanged
                    self._stats = stats
                step = StepItems.of(items)
                deliver(self._streams, step.request_ids, step.values)
            case Accepted(request_id=request_id, error=error):
                future = self._accepting.pop(request_id, None)
                if future is not None and not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
            case Reply(call_id=call_id, result=result, error=error, adapters=adapters):
                if adapters is not None:
                    self._adapters = adapters
                future = self._calls.get(call_id)
                if future is not None and not future.done():
                    if error is None:
                        future.set_result(result)
                    else:
                        future.set_exception(error)
            case DraftAsk():
                self._loop.create_task(self._answer_draft(message))
            case Dead(message=why):
                logger.error("the engine core's loop died: %s", why)
                self._close(EngineDeadError(DEAD_MESSAGE))
            case _:
                logger.error("unknown message from the engine core: %r", message)

    async def _answer_draft(self, ask: DraftAsk) -> None:
        assert self._remote_draft is not None
        try:
            proposals = await asyncio.to_thread(self._remote_draft, ask.queries)
            reply = DraftReply(ask.call_id, proposals)
        except Exception as e:  # the core's RemoteProposer degrades to plain decoding
            reply = DraftReply(ask.call_id, None, RuntimeError(f"remote draft failed: {e}"))
        if self.is_alive:
            self._send(reply)

    def _close(self, error: EngineDeadError) -> None:
        """The core is gone: every stream and waiter gets `error`, once."""
        if self._error is not None:
            return
        self._error = error
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # closed loop or socket
            self._loop.remove_reader(self._conn.fileno())
        for stream in list(self._streams.values()):
            stream.put(error)
        for future in [*self._accepting.values(), *self._calls.values()]:
            if not future.done():
                future.set_exception(error)
        self._conn.close()

    def _wait_ready(self, timeout_s: float) -> Ready:
        if not self._conn.poll(timeout_s):
            self._process.kill()
            raise TimeoutError(f"the engine core did not start within {timeout_s:.0f} s")
        try:
            first = self._conn.recv()
        except EOFError:
            raise RuntimeError(
                f"the engine core exited at start (status {self._process.wait()})"
            ) from None
        if isinstance(first, Failed):
            self._process.wait()
            raise RuntimeError(f"the engine could not start:\n{first.message}")
        assert isinstance(first, Ready), first
        return first


def _start_core() -> tuple[subprocess.Popen, Connection]:
    """`python -m workers.engine_core FD` in a session of its own (a signal to the replica's
    process group must not end it before the replica drains); it ends with its socket."""
    ours, theirs = socket.socketpair()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.engine_core", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    theirs.close()
    conn = Connection(os.dup(ours.fileno()))
    ours.close()
    return process, conn
