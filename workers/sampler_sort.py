"""sort_descending: the values of each row in descending order and their indices, equal
values in index order: torch.sort(x, descending=True, stable=True), which top-p filtering
sorts by, in the per-row reference and in the batched sampler alike.

On the host, through numpy: each value becomes a unique integer key (the float's bits in
an order-preserving form, then its index), sorted by numpy's vectorized sort, several times
faster than torch's CPU sort (top-p's sort is most of a sampling step's host time at a
large vocabulary). Unique keys sort to one order, whatever the algorithm.
"""

from __future__ import annotations

import numpy as np
import torch


def sort_descending(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of x's last dimension sorted descending, ties by index (x
    holds no NaN)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        out = torch.sort(x, dim=-1, descending=True, stable=True)
        return out.values, out.indices
    size = x.shape[-1]
    shift = max(1, (size - 1).bit_length())
    bits = (x + 0.0).numpy().view(np.int32)  # + 0.0: -0.0 is 0.0 (equal values, one key)
    # Negative floats' bits order backwards: flipping all but the sign bit orders every
    # value (-inf and inf too) as a signed int32.
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    keys = (-ordered.astype(np.int64)) << shift
    keys |= np.arange(size, dtype=np.int64)
    keys.sort(axis=-1)
    order = torch.from_numpy(keys & ((1 << shift) - 1))
    return x.gather(-1, order), order
