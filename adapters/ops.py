"""Batched LoRA for a step that mixes adapters (and the base model) token by token."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.host_copy import to_device
from adapters.slots import LoRASlots


def lora_delta_reference(
    x: torch.Tensor, a_stack: torch.Tensor, b_stack: torch.Tensor, token_slots: torch.Tensor
) -> torch.Tensor:
    """The meaning of batched LoRA, one token at a time.

    x [T, in]; a_stack [S, R, in]; b_stack [S, out, R]; token_slots [T] (slot, or -1 for the
    base model) -> delta [T, out] with delta[t] = B[s] @ (A[s] @ x[t]) for s = token_slots[t],
    and 0 where s == -1.
    """
    delta = x.new_zeros(x.shape[0], b_stack.shape[1])
    for t, s in enumerate(token_slots.tolist()):
        if s >= 0:
            delta[t] = b_stack[s] @ (a_stack[s] @ x[t])
    return delta


def lora_delta_segmented(
    x: torch.Tensor,
    a_stack: torch.Tensor,
    b_stack: torch.Tensor,
    groups: tuple[tuple[int, torch.Tensor], ...],
) -> torch.Tensor:
    """Same as lora_delta_reference, one shrink/expand matmul pair per adapter in the step:
    groups holds (slot, token indices of that slot)."""
    delta = x.new_zeros(x.shape[0], b_stack.shape[1])
    for slot, rows in groups:
        delta[rows] = (x[rows] @ a_stack[slot].T) @ b_stack[slot].T
    return delta


@dataclass(frozen=True)
class LoRABatch:
    """Built once per step: the device slot of each token's adapter (-1: base model).

    groups (slot, token indices) drive the plain-torch segmented path; None selects the
    token-gathered Triton kernel, which needs no host sync (CUDA, and CUDA graphs)."""

    slots: LoRASlots
    token_slots: torch.Tensor
    groups: tuple[tuple[int, torch.Tensor], ...] | None

    @classmethod
    def build(cls, slots: LoRASlots, token_slots: list[int]) -> LoRABatch | None:
        """None when no token uses an adapter (the step runs the base model only)."""
        used = sorted({s for s in token_slots if s >= 0})
        if not used:
            return None
        slot_tensor = to_device(token_slots, slots.device)
        if slots.device.type == "cuda":
            return cls(slots, slot_tensor, None)
        groups = tuple((s, torch.nonzero(slot_tensor == s).flatten()) for s in used)
        return cls(slots, slot_tensor, groups)

    def apply(self, layer: int, module: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y (the base projection of x) plus each token's adapter update."""
        a_stack, b_stack = self.slots.stacks(layer, module)
        if self.groups is None:
            from adapters.triton_lora import lora_add_gathered  # needs triton (CUDA)

            return lora_add_gathered(x, a_stack, b_stack, self.token_slots, y)  # y in place
        return y + lora_delta_segmented(x, a_stack, b_stack, self.groups).to(y.dtype)
