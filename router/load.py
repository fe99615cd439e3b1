"""What the router knows about cluster load: its own in-flight requests, KV usage reported
by replicas, and speculative acceptance observed in finished requests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoadSnapshot:
    """Inputs of per-request decisions (speculation); all fractions in [0, 1]."""

    kv_usage: float = 0.0
    batch_occupancy: float = 0.0  # in-flight requests / the cluster's batch slots
    acceptance_rate: float | None = None  # None until enough drafts were observed
    num_drafted: int = 0


@dataclass
class _Acceptance:
    drafted: float = 0.0
    accepted: float = 0.0


@dataclass
class LoadTracker:
    """Router-local view of load. `batch_slots` is replicas x max_num_seqs."""

    batch_slots: int
    # Per finished request of the adapter, drafted or not, old observations fade. So a rate
    # that vetoed speculation (MinAcceptance) does not stay forever: once plain requests have
    # faded it below `min_drafted`, it is unknown again, the next requests draft, and the
    # rate is measured anew (about one request in 30 probes while acceptance stays low).
    decay: float = 0.98
    min_drafted: int = 64  # below this, acceptance is unknown
    kv_usage: float = 0.0
    in_flight: int = 0
    _acceptance: dict[str, _Acceptance] = field(default_factory=dict)

    def on_start(self) -> None:
        self.in_flight += 1

    def on_finish(self, adapter: str | None, drafted: int, accepted: int) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        seen = self._acceptance.get(adapter or "")
        if seen is None:
            if not drafted:
                return
            seen = self._acceptance[adapter or ""] = _Acceptance()
        seen.drafted = seen.drafted * self.decay + drafted
        seen.accepted = seen.accepted * self.decay + accepted

    def update_kv_usage(self, kv_usage: float) -> None:
        self.kv_usage = min(max(kv_usage, 0.0), 1.0)

    def snapshot(self, adapter: str | None) -> LoadSnapshot:
        seen = self._acceptance.get(adapter or "")
        rate = None
        drafted = 0
        if seen is not None and seen.drafted >= self.min_drafted:
            rate = seen.accepted / seen.drafted
            drafted = int(seen.drafted)
        return LoadSnapshot(
            kv_usage=self.kv_usage,
            batch_occupancy=min(1.0, self.in_flight / max(self.batch_slots, 1)),
            acceptance_rate=rate,
            num_drafted=drafted,
        )
