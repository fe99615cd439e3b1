"""to_device lives in adapters.host_copy (adapters/ never imports workers/); re-exported,
with array_to_device for the numpy arrays a step's inputs are gathered into."""

import numpy as np
import torch

from adapters.host_copy import to_device


def array_to_device(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """An int64 copy of `values` on `device`; on CUDA through pinned memory asynchronously,
    as to_device (the copy must not wait for a step in flight)."""
    host = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
    if device.type != "cuda":
        return host.clone()
    return host.pin_memory().to(device, non_blocking=True)


__all__ = ["array_to_device", "to_device"]
