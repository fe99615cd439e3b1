"""AdapterGate: which waiting requests may start, given the adapters already running."""

from __future__ import annotations

from adapters.manager import LoRAManager


class AdapterGate:
    """One admission pass over the waiting queue, in priority order.

    Running requests use at most `max_loras` distinct adapters, so every running request
    fits in every step. A request whose adapter would exceed that waits, and from then on
    this pass admits only base-model requests: the running adapters drain instead of being
    renewed, so the waiting adapter gets its turn (no starvation). A request whose adapter is
    still being read from disk just waits; it holds nobody up.
    """

    def __init__(self, manager: LoRAManager | None, running_keys: set[str]) -> None:
        self.manager = manager
        self.active = set(running_keys)
        self.blocked = False

    def allows(self, key: str | None) -> bool:
        if key is None:
            return True
        assert self.manager is not None
        if self.blocked or not self.manager.ensure_in_memory(key):
            return False
        if key in self.active or len(self.active) < self.manager.config.max_loras:
            return True
        self.blocked = True
        return False

    def admitted(self, key: str | None) -> None:
        if key is not None:
            self.active.add(key)
