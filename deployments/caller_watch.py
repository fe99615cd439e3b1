"""Abort the requests of a caller that died.

A Router replica streams each request from an LLMServer replica. When the Router dies (its
node fails, it is killed), Ray does not cancel the streaming calls it made: the replica would
go on generating for nobody until `max_tokens`, every batch slot held. So each stream names
its caller (the Router replica's actor), and the replica checks, every `period_s`, that the
callers it serves still exist; a caller that is gone gets its requests aborted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ray
from ray.serve._private.constants import SERVE_NAMESPACE  # where Serve names its replicas

logger = logging.getLogger(__name__)

WATCH_PERIOD_S = 0.5

Caller = tuple[str, str]  # (actor name, namespace)


def actor_alive(caller: Caller) -> bool:
    """False only when Ray says no actor has that name (it died and was not restarted);
    any other failure (GCS busy, ...) counts as alive: never abort on a doubt."""
    name, namespace = caller
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    except Exception:  # a failed look-up is not a death
        logger.debug("liveness check of %s failed", name, exc_info=True)
    return True


def this_replica() -> Caller | None:
    """The current Serve replica's actor (name, namespace); None outside a named actor.
    (The runtime context's namespace is the job's, not the one Serve names replicas in.)"""
    name = ray.get_runtime_context().get_actor_name()
    return (name, SERVE_NAMESPACE) if name else None


class CallerWatch:
    def __init__(
        self,
        abort: Callable[[str], None],
        is_alive: Callable[[Caller], bool] = actor_alive,
        period_s: float = WATCH_PERIOD_S,
    ) -> None:
        self._abort = abort
        self._is_alive = is_alive
        self._period_s = period_s
        self._requests: dict[Caller, set[str]] = {}
        self.num_orphans_aborted = 0

    @contextmanager
    def watching(self, caller: Caller | None, request_id: str) -> Iterator[None]:
        """Track `request_id` under `caller` for the duration of the block."""
        if caller is None:
            yield
            return
        self._requests.setdefault(caller, set()).add(request_id)
        try:
            yield
        finally:
            ids = self._requests.get(caller)
            if ids is not None:
                ids.discard(request_id)
                if not ids:
                    del self._requests[caller]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            for caller in list(self._requests):
                if not await asyncio.to_thread(self._is_alive, caller):
                    self._abort_all(caller)

    def _abort_all(self, caller: Caller) -> None:
        ids = self._requests.pop(caller, set())
        if ids:
            logger.warning("caller %s is gone; aborting its %d requests", caller[0], len(ids))
        for request_id in ids:
            self._abort(request_id)
        self.num_orphans_aborted += len(ids)
