"""ThroughputGate: speculate only where it has measurably paid.

The speedup model prices a draft step by a configured cost ratio; what a step really costs
(Python overhead, verification, the batch size) is only known by measuring. Per batch-size
bucket, the gate keeps the tokens per second of recent steps with drafts and without, and
lets speculation run while it is not slower; the other choice is retried every
`probe_interval` steps so the comparison stays current, less often the more it lost (a
probe of a choice ten times slower costs ten steps: it waits 64 intervals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

_EMA = 0.2
_MAX_BACKOFF = 64  # probe intervals between probes of a choice that lost badly


class DraftGate(Protocol):
    """Whether a step of this batch size drafts; told how each decode-only step went."""

    def allow(self, batch_size: int) -> bool: ...

    def record(self, batch_size: int, drafted: bool, tokens: int, seconds: float) -> None: ...


class AlwaysDraft:
    """The gate of SpecConfig.throughput_gate=False: every step may draft."""

    def allow(self, batch_size: int) -> bool:
        return True

    def record(self, batch_size: int, drafted: bool, tokens: int, seconds: float) -> None:
        return None


@dataclass
class _Arm:
    rate: float | None = None  # output tokens per second, smoothed

    def record(self, rate: float) -> None:
        self.rate = rate if self.rate is None else (1 - _EMA) * self.rate + _EMA * rate


class ThroughputGate:
    def __init__(self, probe_interval: int = 16, margin: float = 0.02) -> None:
        self.probe_interval = probe_interval
        self.margin = margin
        self._arms: dict[tuple[int, bool], _Arm] = {}
        self._steps: dict[int, int] = {}

    def allow(self, batch_size: int) -> bool:
        """Whether this step may draft."""
        bucket = _bucket(batch_size)
        step = self._steps.get(bucket, 0)
        self._steps[bucket] = step + 1
        spec, plain = self._arm(bucket, True).rate, self._arm(bucket, False).rate
        if spec is None or plain is None:
            return spec is None  # measure each choice once before comparing
        better = spec >= plain * (1 - self.margin)
        loss = max(spec, plain) / max(min(spec, plain), 1e-9)
        period = int(self.probe_interval * min(loss * loss, _MAX_BACKOFF))
        probe = step % period == period - 1
        return not better if probe else better

    def record(self, batch_size: int, drafted: bool, tokens: int, seconds: float) -> None:
        if seconds > 0 and tokens > 0:
            self._arm(_bucket(batch_size), drafted).record(tokens / seconds)

    def _arm(self, bucket: int, drafted: bool) -> _Arm:
        return self._arms.setdefault((bucket, drafted), _Arm())


def _bucket(batch_size: int) -> int:
    """Powers of two: steps of similar size share a measurement."""
    return 1 << max(batch_size - 1, 0).bit_length()
