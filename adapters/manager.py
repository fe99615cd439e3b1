"""LoRAManager: the adapters one engine knows, their versions and where their weights live.

Tiers: device slots (LoRASlots, `max_loras`), host memory (LRU, `max_cpu_loras`), and disk
(re-read in a background thread when a request needs it). Requests bind to an adapter's
version when admitted: a replaced or unloaded adapter stays until its requests drain.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.base_model import BaseModelShape
from adapters.config import LoRAConfig
from adapters.errors import AdapterLoadError, AdapterNotFoundError
from adapters.info import AdapterInfo
from adapters.paths import resolve_adapter_dir
from adapters.peft_loader import load_peft_adapter
from adapters.slots import LoRASlots
from adapters.weights import LoRAWeights

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class AdapterEntry:
    name: str
    directory: Path
    version: int
    rank: int
    pinned: bool
    weights: LoRAWeights | None
    running: int = 0
    retired: bool = False
    pending: Future[LoRAWeights] | None = None

    @property
    def key(self) -> str:
        """Identity of this version: requests, slots and prefix-cache keys use it."""
        return f"{self.name}@{self.version}"


class LoRAManager:
    """Used from the engine's loop thread; `read` may run on any thread."""

    def __init__(
        self, config: LoRAConfig, model: BaseModelShape, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.config = config
        self.model = model
        self.slots = LoRASlots(model, config.max_loras, config.max_lora_rank, dtype, device)
        self._current: dict[str, AdapterEntry] = {}
        self._entries: dict[str, AdapterEntry] = {}
        self._in_memory: OrderedDict[str, None] = OrderedDict()
        self._versions = 0
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="tandem-lora-loader")
        self.num_disk_loads = 0

    # -- control plane ------------------------------------------------------------------------

    def read(self, path: str) -> tuple[Path, LoRAWeights]:
        """Resolve and validate an adapter from disk (no state changes; any thread)."""
        directory = resolve_adapter_dir(path, self.config.adapter_roots)
        weights = load_peft_adapter(
            directory, self.model, self.config.max_lora_rank, self.config.adapter_roots
        )
        return directory, weights

    def register(
        self, name: str, directory: Path, weights: LoRAWeights, pinned: bool = False
    ) -> AdapterInfo:
        """Make `name` serve these weights; an existing version is retired (drains)."""
        if not name or ":" in name or "@" in name:
            raise AdapterLoadError(f"adapter name {name!r} must be non-empty, without ':' or '@'")
        num_pinned = sum(e.pinned for n, e in self._current.items() if n != name)
        if pinned and num_pinned + 1 >= self.config.max_loras:
            raise AdapterLoadError(
                f"at most max_loras - 1 = {self.config.max_loras - 1} "
                "adapters can be pinned; unpin or unload one first"
            )
        self._versions += 1
        entry = AdapterEntry(name, directory, self._versions, weights.rank, pinned, weights)
        old = self._current.get(name)
        self._current[name] = entry
        self._entries[entry.key] = entry
        self._in_memory[entry.key] = None
        if old is not None:
            self._retire(old)
        self._evict_from_memory(protect=entry.key)
        return self.info(entry)

    def unregister(self, name: str) -> None:
        """New requests for `name` are refused; running ones finish on its weights."""
        entry = self._current.pop(name, None)
        if entry is None:
            raise AdapterNotFoundError(f"adapter {name!r} is not loaded")
        self._retire(entry)

    def resolve(self, name: str) -> str:
        """The key of the version a new request for `name` runs on."""
        entry = self._current.get(name)
        if entry is None:
            known = ", ".join(sorted(self._current)) or "none"
            raise AdapterNotFoundError(f"adapter {name!r} is not loaded (loaded: {known})")
        return entry.key

    def list(self) -> list[AdapterInfo]:
        return [self.info(e) for e in self._current.values()]

    def info(self, entry: AdapterEntry) -> AdapterInfo:
        if self.slots.slot_of(entry.key) is not None:
            residency = "device"
        elif entry.weights is not None:
            residency = "cpu"
        else:
            residency = "disk"
        return AdapterInfo(
            entry.name,
            str(entry.directory),
            entry.version,
            entry.rank,
            residency,
            entry.pinned,
            entry.running,
        )

    # -- data plane ---------------------------------------------------------------------------

    def acquire(self, key: str) -> None:
        self._entries[key].running += 1

    def release(self, key: str) -> None:
        entry = self._entries[key]
        entry.running -= 1
        if entry.retired and entry.running == 0:
            self._drop(entry)

    def ensure_in_memory(self, key: str) -> bool:
        """True if the adapter's weights are in host memory; otherwise start reading them in
        the background and return False (the request waits, the step loop does not)."""
        entry = self._entries[key]
        if entry.weights is not None:
            self._in_memory.move_to_end(key)
            return True
        if entry.pending is None:
            entry.pending = self._loader.submit(self._reread, entry)
        elif entry.pending.done():
            future, entry.pending = entry.pending, None
            try:
                entry.weights = future.result()
            except AdapterLoadError:
                logger.exception("re-reading adapter %s failed; retrying", key)
                return False
            self.num_disk_loads += 1
            self._in_memory[key] = None
            self._evict_from_memory(protect=key)
            return True
        return False

    def activate(self, keys: set[str]) -> dict[str, int]:
        """Device slots for this step's adapters."""

        def weights_of(key: str) -> LoRAWeights:
            weights = self._entries[key].weights
            assert weights is not None, "admitted requests have their adapter in memory"
            return weights

        return self.slots.activate(keys, weights_of, keep=self._is_pinned)

    # -- internals ----------------------------------------------------------------------------

    def _reread(self, entry: AdapterEntry) -> LoRAWeights:
        return load_peft_adapter(
            entry.directory, self.model, self.config.max_lora_rank, self.config.adapter_roots
        )

    def _is_pinned(self, key: str | None) -> bool:
        return key is not None and key in self._entries and self._entries[key].pinned

    def _retire(self, entry: AdapterEntry) -> None:
        entry.retired = True
        if entry.running == 0:
            self._drop(entry)

    def _drop(self, entry: AdapterEntry) -> None:
        self._entries.pop(entry.key, None)
        self._in_memory.pop(entry.key, None)
        self.slots.evict(entry.key)
        entry.weights = None

    def _evict_from_memory(self, protect: str | None = None) -> None:
        """Keep at most max_cpu_loras adapters in host memory: send the least recently used
        that are neither pinned nor running back to disk (and out of their device slot)."""
        for key in list(self._in_memory):
            if len(self._in_memory) <= self.config.max_cpu_loras:
                return
            entry = self._entries[key]
            if key == protect or entry.pinned or entry.running:
                continue
            entry.weights = None
            del self._in_memory[key]
            self.slots.evict(key)
