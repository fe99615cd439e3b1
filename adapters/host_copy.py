"""Host values to the device without waiting for the work already queued there."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def to_device(values: Sequence, device: torch.device) -> torch.Tensor:
    """An int64 tensor of `values` on `device`. On CUDA it goes through pinned memory
    asynchronously: a copy from pageable memory would wait for the stream, which holds the
    step in flight when the next one is prepared (async scheduling)."""
    if device.type != "cuda":
        return torch.tensor(values, dtype=torch.long, device=device)
    return torch.tensor(values, dtype=torch.long, pin_memory=True).to(device, non_blocking=True)
