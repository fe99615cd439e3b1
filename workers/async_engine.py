"""AsyncEngine: the engine's step loop on a background thread, with an async stream of
TokenDeltas per request. Safe to use from any asyncio event loop."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from workers.delta_streams import DEAD_MESSAGE, add_or_error, delivered, stream_deltas
from workers.engine import LLMEngine
from workers.errors import EngineDeadError
from workers.gc_freeze import long_lived_objects_frozen
from workers.protocol import AdapterInfo, GenerateRequest, ReplicaStats, TokenDelta

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _settle(future: asyncio.Future[T], result: T | None, error: Exception | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _put_all(items: list[tuple[asyncio.Queue, TokenDelta | BaseException]]) -> None:
    for target, item in items:
        target.put_nowait(item)


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TokenDelta | BaseException]
    num_samples: int


class AsyncEngine:
    """Owns an LLMEngine; only the loop thread touches it after start."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._stopped = False
        self._error: BaseException | None = None
        self._stats = engine.stats()
        self._thread = threading.Thread(target=self._run, name="tandem-engine", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    def add_request(self, spec: GenerateRequest) -> AsyncGenerator[TokenDelta, None]:
        """Validate now (ValueError) and queue the request; iterate the result for its
        deltas. Leaving the iteration early aborts the request."""
        self._check_alive()
        if spec.request_id in self._streams:
            raise ValueError(f"request id {spec.request_id!r} is already in use")
        self.engine.validate(spec)
        samples = spec.sampling.n
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue(), samples)
        self._streams[spec.request_id] = stream
        self._submit(lambda: self._add(spec))
        if not self.is_alive:  # the loop died after the check above: nobody reads commands
            self._streams.pop(spec.request_id, None)
            self._check_alive()
        return stream_deltas(
            spec.request_id, stream.queue, stream.num_samples, self._streams, self.abort
        )

    async def open(self, spec: GenerateRequest) -> AsyncGenerator[TokenDelta, None]:
        """add_request, awaitable as ProcessEngine.open is (router/replica_stream.py)."""
        return self.add_request(spec)

    def abort(self, request_id: str) -> None:
        """Cancel a request; its KV blocks return to the pool in the next loop turn."""
        self._submit(lambda: self._abort(request_id))

    def stats(self) -> ReplicaStats:
        return self._stats

    async def load_adapter(self, name: str, path: str, pinned: bool = False) -> AdapterInfo:
        """Read and validate off the step loop, then register between two steps."""
        self._check_alive()
        directory, weights = await asyncio.to_thread(self.engine.adapter_manager().read, path)
        return await self._call(
            lambda: self.engine.adapter_manager().register(name, directory, weights, pinned)
        )

    async def unload_adapter(self, name: str) -> None:
        self._check_alive()
        await self._call(lambda: self.engine.unload_adapter(name))

    def list_adapters(self) -> list[AdapterInfo]:
        return self.engine.list_adapters()

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive() and self._error is None

    def shutdown(self) -> None:
        self._stopped = True
        self._wakeup.set()
        self._thread.join(timeout=10)

    # -- caller side ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run fn on the loop thread between steps; its result or exception comes back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def command() -> None:
            try:
                result = fn()
            except Exception as e:  # handed to the caller, who decides
                loop.call_soon_threadsafe(_settle, future, None, e)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self._submit(command)
        return await future

    def _submit(self, command: Callable[[], None]) -> None:
        self._commands.put(command)
        self._wakeup.set()

    def _check_alive(self) -> None:
        if not self.is_alive:
            raise EngineDeadError(DEAD_MESSAGE)

    # -- loop thread --------------------------------------------------------------------------

    def _add(self, spec: GenerateRequest) -> None:
        error = add_or_error(self.engine, spec)
        if error is not None:
            self._deliver(spec.request_id, error)

    def _abort(self, request_id: str) -> None:
        for delta in self.engine.abort(request_id):
            self._deliver(request_id, delta)
        # The caller's stream may never have started (closed at once): then nothing else
        # removes it. Its last item is on the way, so a caller still reading misses nothing.
        self._streams.pop(request_id, None)

    def _run(self) -> None:
        try:
            with long_lived_objects_frozen():
                self._loop()
        except BaseException as e:  # the loop must report any failure to every waiter
            logger.exception("engine loop died")
            self._error = e
            for request_id in list(self._streams):
                self._deliver(request_id, EngineDeadError(DEAD_MESSAGE))

    def _loop(self) -> None:
        while not self._stopped:
            self._drain_commands()
            if not self.engine.has_unfinished():
                self._stats = self.engine.stats()
                self._wakeup.wait(timeout=0.5)
                self._wakeup.clear()
                continue
            self._deliver_step(self.engine.step())
            self._stats = self.engine.stats()

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _deliver(self, request_id: str, item: TokenDelta | BaseException) -> None:
        stream = self._streams.get(request_id)
        if stream is None:
            return
        stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)

    def _deliver_step(self, deltas: Iterable[TokenDelta]) -> None:
        """A step's deltas, one wakeup per event loop: each call_soon_threadsafe writes to the
        loop's self-pipe and needs the GIL on both sides, so one call per delta would cost a
        busy replica a loop wakeup per running request per step."""
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, TokenDelta | BaseException]]
        ] = {}
        for delta in deltas:
            stream = self._streams.get(delta.request_id)
            if stream is None:
                continue
            by_loop.setdefault(stream.loop, []).append((stream.queue, delivered(delta)))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_put_all, items)
