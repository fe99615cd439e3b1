"""Admission: a bounded number of requests run, a bounded number wait in FIFO order, and
the rest are refused at once (429 with Retry-After). A request that got in is never dropped:
it waits for a slot for as long as its client does."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from router.errors import overloaded


@dataclass(frozen=True)
class AdmissionConfig:
    max_running: int  # requests dispatched to replicas at once
    max_waiting: int  # requests queued in this router beyond that
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_running < 1 or self.max_waiting < 0:
            raise ValueError("admission needs max_running >= 1 and max_waiting >= 0")


class Slot:
    """A running slot; `release` is idempotent so every exit path may call it."""

    def __init__(self, controller: AdmissionController) -> None:
        self._controller = controller
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._controller._release()


class AdmissionController:
    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def num_running(self) -> int:
        return self._running

    @property
    def num_waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> Slot:
        """A slot now, or after queueing; raises a 429 APIError when the queue is full."""
        if self._running < self.config.max_running and not self._waiters:
            self._running += 1
            return Slot(self)
        if len(self._waiters) >= self.config.max_waiting:
            raise overloaded(
                f"the server is at capacity ({self._running} running, {len(self._waiters)} "
                "queued); retry after the time in Retry-After",
                self.config.retry_after_s,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as the client left
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        return Slot(self)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter; running is unchanged
                return
        self._running -= 1
        assert self._running >= 0
