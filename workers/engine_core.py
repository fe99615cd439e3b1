"""The engine-core process: one LLMEngine stepping on the main thread of a process of its
own, so no streaming, HTTP or Ray work of the replica ever waits for its GIL, nor it for
theirs (as vLLM's engine-core process). workers/process_engine.py starts it and talks to it
over one socket (workers/core_messages.py).

Threads here: the main thread steps the engine and runs every command between two steps;
a reader thread turns the socket into an inbox (and answers the RemoteProposer's waits); an
adapter's weights are read on a short-lived thread, off the step loop, as in AsyncEngine.
The process ends when its parent says Stop or its socket closes (the parent died).

    python -m workers.engine_core FD   (FD: the inherited socket; the config comes over it)
"""

from __future__ import annotations

import itertools
import logging
import pickle
import queue
import sys
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

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
from workers.delta_streams import add_or_error
from workers.engine import LLMEngine
from workers.gc_freeze import long_lived_objects_frozen
from workers.protocol import ReplicaStats, TokenDelta
from workers.spec.proposers import DraftQuery, Proposal
from workers.step_items import step_items

logger = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5


class Link:
    """The socket, shared by the threads that send (one message at a time)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        # As Connection.send, without its pickler's per-message set-up.
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.conn.send_bytes(data)


class DraftBridge:
    """The engine's RemoteClient inside the core: asks the parent, whose DraftServer handle
    answers; blocks the calling (RemoteProposer) thread until the reply or `timeout_s`."""

    def __init__(self, link: Link, timeout_s: float) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._ids = itertools.count()
        self._waiting: dict[int, Future[list[Proposal | None]]] = {}

    def __call__(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        call_id = next(self._ids)
        future: Future[list[Proposal | None]] = Future()
        self._waiting[call_id] = future
        try:
            self._link.send(DraftAsk(call_id, queries))
            return future.result(timeout=self._timeout_s)
        finally:
            self._waiting.pop(call_id, None)

    def settle(self, reply: DraftReply) -> None:
        future = self._waiting.get(reply.call_id)
        if future is None or future.done():
            return  # it timed out already
        if reply.error is not None:
            future.set_exception(reply.error)
        else:
            future.set_result(reply.proposals or [])


@dataclass(frozen=True)
class _RegisterAdapter:
    """An adapter read off the loop, to register between two steps (core-internal)."""

    call_id: int
    name: str
    directory: Any
    weights: Any
    pinned: bool


class EngineCore:
    def __init__(self, engine: LLMEngine, link: Link, bridge: DraftBridge | None) -> None:
        self.engine = engine
        self.link = link
        self.bridge = bridge
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = False
        self._last_stats: ReplicaStats | None = None

    def run(self) -> None:
        threading.Thread(target=self._read, name="tandem-core-reader", daemon=True).start()
        self._last_stats = self.engine.stats()
        self.link.send(Ready(self._last_stats, self.engine.list_adapters()))
        try:
            with long_lived_objects_frozen():
                self._loop()
        except BaseException as e:
            logger.exception("engine loop died")
            self.link.send(Dead(f"{type(e).__name__}: {e}"))

    def _loop(self) -> None:
        while not self._stopped:
            self._drain()
            if self._stopped:
                return
            if not self.engine.has_unfinished():
                self._send_stats_if_changed()
                try:
                    message = self.inbox.get(timeout=IDLE_WAIT_S)
                except queue.Empty:
                    continue
                self._handle(message)
                continue
            self._send_step(self.engine.step())

    def _drain(self) -> None:
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(message)

    def _read(self) -> None:
        """Socket -> inbox; draft replies go straight to the thread waiting for them."""
        while True:
            try:
                message = self.link.conn.recv()
            except (EOFError, OSError):  # the parent is gone
                self.inbox.put(Stop())
                return
            if isinstance(message, DraftReply):
                if self.bridge is not None:
                    self.bridge.settle(message)
            else:
                self.inbox.put(message)

    # -- commands, between two steps -----------------------------------------------------------

    def _handle(self, message: Any) -> None:
        match message:
            case Add(request=spec):
                self.link.send(Accepted(spec.request_id, self._add(spec)))
            case Abort(request_id=request_id):
                deltas = self.engine.abort(request_id)
                if deltas:
                    self.link.send(Step(step_items(deltas), self._changed_stats()))
            case Call(call_id=call_id, method="load_adapter", args=args):
                threading.Thread(target=self._read_adapter, args=(call_id, *args)).start()
            case Call(call_id=call_id, method="unload_adapter", args=(name,)):
                self._reply(call_id, lambda: self.engine.unload_adapter(name))
            case _RegisterAdapter():
                self._register(message)
            case Stop():
                self._stopped = True
            case _:
                logger.error("engine core: unknown message %r", message)

    def _add(self, spec: Any) -> BaseException | None:
        error = add_or_error(self.engine, spec)
        return None if error is None else _picklable(error)

    def _read_adapter(self, call_id: int, name: str, path: str, pinned: bool) -> None:
        try:
            directory, weights = self.engine.adapter_manager().read(path)
        except Exception as e:
            self.link.send(Reply(call_id, error=_picklable(e)))
            return
        self.inbox.put(_RegisterAdapter(call_id, name, directory, weights, pinned))

    def _register(self, message: _RegisterAdapter) -> None:
        m = message
        manager = self.engine.adapter_manager()
        self._reply(m.call_id, lambda: manager.register(m.name, m.directory, m.weights, m.pinned))

    def _reply(self, call_id: int, fn: Any) -> None:
        try:
            result = fn()
        except Exception as e:
            self.link.send(Reply(call_id, error=_picklable(e)))
        else:
            self.link.send(Reply(call_id, result, adapters=self.engine.list_adapters()))

    # -- output ----------------------------------------------------------------------------------

    def _send_step(self, deltas: list[TokenDelta]) -> None:
        self.link.send(Step(step_items(deltas), self._changed_stats()))

    def _send_stats_if_changed(self) -> None:
        stats = self._changed_stats()
        if stats is not None:
            self.link.send(Step([], stats))

    def _changed_stats(self) -> ReplicaStats | None:
        """The engine's stats, or None where the parent has them already (the last sent)."""
        stats = self.engine.stats()
        if stats == self._last_stats:
            return None
        self._last_stats = stats
        return stats


def _picklable(error: BaseException) -> BaseException:
    """`error`, or a RuntimeError with its message where it does not pickle."""
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(str(error))
    return error


def main(fd: int) -> None:
    logging.basicConfig(level=logging.INFO)
    link = Link(Connection(fd))
    config, remote_draft = link.conn.recv()
    try:
        engine = LLMEngine(config)
        bridge = None
        if remote_draft:
            bridge = DraftBridge(link, config.spec.remote_timeout_s + 1.0)
            engine.attach_remote_draft(bridge)
    except BaseException:
        link.send(Failed(traceback.format_exc()))
        return
    EngineCore(engine, link, bridge).run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
