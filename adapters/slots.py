"""LoRASlots: the adapters active on the device, as stacked, rank-padded weights."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

from adapters.base_model import BaseModelShape
from adapters.config import SUPPORTED_MODULES
from adapters.peft_loader import module_shape
from adapters.weights import LoRAWeights


class LoRASlots:
    """For every layer and projection: A [max_loras, max_rank, in] and
    B [max_loras, out, max_rank]. An adapter of rank r fills the first r ranks of its slot;
    the rest stay zero, so every slot computes with the same shapes."""

    def __init__(
        self,
        model: BaseModelShape,
        max_loras: int,
        max_rank: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.device = device
        self.max_loras = max_loras
        # Ranks padded to a power of two: the gathered kernel tiles the rank dimension whole.
        max_rank = 1 << max(max_rank - 1, 0).bit_length()
        self._a: dict[tuple[int, str], torch.Tensor] = {}
        self._b: dict[tuple[int, str], torch.Tensor] = {}
        for layer in range(model.num_hidden_layers):
            for module in SUPPORTED_MODULES:
                in_f, out_f = module_shape(model, module)
                self._a[(layer, module)] = torch.zeros(
                    max_loras, max_rank, in_f, dtype=dtype, device=device
                )
                self._b[(layer, module)] = torch.zeros(
                    max_loras, out_f, max_rank, dtype=dtype, device=device
                )
        self.keys: list[str | None] = [None] * max_loras
        self._recent: OrderedDict[int, None] = OrderedDict((i, None) for i in range(max_loras))
        self.num_writes = 0

    def stacks(self, layer: int, module: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self._a[(layer, module)], self._b[(layer, module)]

    def slot_of(self, key: str) -> int | None:
        return self.keys.index(key) if key in self.keys else None

    def activate(
        self,
        needed: set[str],
        weights_of: Callable[[str], LoRAWeights],
        keep: Callable[[str], bool] = lambda key: False,
    ) -> dict[str, int]:
        """Slots for every needed adapter (at most max_loras), writing the missing ones over
        the least recently used slots that this step does not need; `keep` marks adapters
        (pinned) to evict only when nothing else can go."""
        assert len(needed) <= self.max_loras, "the scheduler admits at most max_loras adapters"
        placed = {key: slot for key in needed if (slot := self.slot_of(key)) is not None}
        for key in sorted(needed - placed.keys()):
            slot = self._victim(set(placed.values()), keep)
            self._write(slot, weights_of(key))
            self.keys[slot] = key
            placed[key] = slot
        for slot in placed.values():
            self._recent.move_to_end(slot)
        return placed

    def evict(self, key: str) -> None:
        """Forget an adapter (unloaded or replaced); its slot is reused first."""
        slot = self.slot_of(key)
        if slot is not None:
            self.keys[slot] = None
            self._recent.move_to_end(slot, last=False)

    def _victim(self, taken: set[int], keep: Callable[[str], bool]) -> int:
        free = [s for s in self._recent if s not in taken]
        empty = [s for s in free if self.keys[s] is None]
        unpinned = [s for s in free if not keep(self.keys[s])]  # type: ignore[arg-type]
        return (empty or unpinned or free)[0]

    def _write(self, slot: int, weights: LoRAWeights) -> None:
        r = weights.rank
        for key, a in self._a.items():
            b = self._b[key]
            a[slot].zero_()
            b[slot].zero_()
            if key in weights.lora_a:
                a[slot, :r] = weights.lora_a[key].to(a.dtype)
                b[slot, :, :r] = weights.lora_b[key].to(b.dtype)
        self.num_writes += 1
