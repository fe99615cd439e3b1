"""What crosses the socket between a replica and its engine-core process.

Parent -> core: Add, Abort, Call (adapter work, answered by a Reply), DraftReply, Stop.
Core -> parent: Ready (once, or Failed), Accepted (per Add), Step (per engine step: every
request's new deltas, or its error, and the engine's stats where they changed), Reply,
DraftAsk (the core's RemoteProposer wants proposals from the replica's DraftServer handle),
Dead.

Each message is one pickled object (protocol 5) on a multiprocessing Connection; a Step's
deltas cross as columns (workers/delta_columns.py), not as TokenDelta objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers import delta_columns
from workers.protocol import AdapterInfo, GenerateRequest, ReplicaStats, TokenDelta


@dataclass(frozen=True)
class Add:
    request: GenerateRequest


@dataclass(frozen=True)
class Abort:
    request_id: str


@dataclass(frozen=True)
class Call:
    """Adapter work by name: load_adapter(name, path, pinned), unload_adapter(name)."""

    call_id: int
    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class DraftReply:
    call_id: int
    proposals: list[Any] | None
    error: BaseException | None = None


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Ready:
    stats: ReplicaStats
    adapters: list[AdapterInfo]


@dataclass(frozen=True)
class Failed:
    """The core could not start; `message` is the error, with its traceback."""

    message: str


@dataclass(frozen=True)
class Accepted:
    """The engine took the request (error None) or refused it (a ValueError to re-raise)."""

    request_id: str
    error: BaseException | None = None


@dataclass(frozen=True)
class Step:
    """One step's output: (request id, delta or the request's error), in order; the engine's
    stats, or None where they are those of the core's previous message."""

    items: Sequence[tuple[str, TokenDelta | BaseException]]  # the core's: StepItems
    stats: ReplicaStats | None

    def __reduce__(self) -> tuple[Any, ...]:
        return _step, (delta_columns.encode(self.items), self.stats)


def _step(columns: delta_columns.Encoded, stats: ReplicaStats | None) -> Step:
    """A Step from its pickled form (Step.__reduce__)."""
    return Step(delta_columns.decode(columns), stats)


@dataclass(frozen=True)
class Reply:
    call_id: int
    result: Any = None
    error: BaseException | None = None
    adapters: list[AdapterInfo] | None = None  # the registry after the call


@dataclass(frozen=True)
class DraftAsk:
    call_id: int
    queries: list[Any]


@dataclass(frozen=True)
class Dead:
    """The core's step loop stopped on an internal error."""

    message: str
