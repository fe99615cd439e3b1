"""AdapterInfo: what the engine reports about one adapter; workers.protocol re-exports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdapterInfo:
    """A registered LoRA adapter and where its weights are now."""

    name: str
    path: str
    version: int
    rank: int
    residency: str  # "device" (in a weight slot), "cpu" (host memory) or "disk"
    pinned: bool
    num_running: int
