"""Functions that run inside an LLMServer replica's actor (through `__ray_call__`), kept
in a module without heavy imports so that the replica loads it at once."""

from __future__ import annotations

from typing import Any


def user_callable(replica_actor: Any) -> Any:
    """The LLMServer instance a Serve replica actor wraps."""
    return replica_actor._replica_impl._user_callable_wrapper._callable


def engine_is_alive(replica_actor: Any) -> bool:
    return user_callable(replica_actor).engine.is_alive


def break_engine_loop(replica_actor: Any) -> None:
    """The next engine step raises, as a real engine bug would."""

    def broken_step() -> None:
        raise RuntimeError("an engine bug in /secret/path.py at 10.0.0.7")

    user_callable(replica_actor).engine.engine.step = broken_step


def engine_core_pid(replica_actor: Any) -> int:
    """The pid of a ProcessEngine replica's engine-core process."""
    return user_callable(replica_actor).engine._process.pid
