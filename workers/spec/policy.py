"""How many tokens to draft: per-request acceptance, the batch size, and the speedup model."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.spec.config import SpecConfig

_EMA = 0.3  # weight of the newest round in the acceptance estimate


def expected_speedup(a: float, k: int, c: float) -> float:
    """Tokens per unit of target time with k drafts of per-token acceptance a and relative
    draft cost c, over plain decoding: (1 - a^(k+1)) / ((1 - a)(k c + 1))."""
    if k == 0:
        return 1.0
    tokens = (k + 1) if a >= 1.0 else (1 - a ** (k + 1)) / (1 - a)
    return tokens / (k * c + 1)


def best_k(a: float, c: float, k_max: int) -> int:
    return max(range(k_max + 1), key=lambda k: (expected_speedup(a, k, c), -k))


@dataclass
class _Estimate:
    acceptance: float
    steps_since_draft: int = 0


@dataclass
class SpecStats:
    """Counters for metrics: rounds drafted, drafted and accepted tokens (in total, per
    draft position, and per adapter)."""

    num_drafts: int = 0
    num_drafted_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    per_adapter: dict[str, list[int]] = field(default_factory=dict)  # [drafted, accepted]

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted_tokens / max(self.num_drafted_tokens, 1)

    @property
    def mean_accepted_length(self) -> float:
        return self.num_accepted_tokens / max(self.num_drafts, 1)


class SpecPolicy:
    def __init__(self, config: SpecConfig) -> None:
        self.config = config
        self.stats = SpecStats(accepted_per_position=[0] * config.num_speculative_tokens)
        self._requests: dict[str, _Estimate] = {}
        self._groups: dict[str, float] = {}  # acceptance per (adapter, proposer)

    def num_drafts(self, key: str, group: str, batch_size: int, room: int) -> int:
        """Tokens to draft for this request now: 0 when the batch is large, when acceptance
        is low (probing again now and then), or when the output is nearly done. A new
        request starts from its group's acceptance (same adapter and proposer)."""
        cfg = self.config
        if batch_size > cfg.max_batch_size or room <= 0:
            return 0
        estimate = self._requests.setdefault(
            key, _Estimate(self._groups.get(group, cfg.initial_acceptance))
        )
        k = best_k(estimate.acceptance, cfg.draft_cost_ratio, cfg.num_speculative_tokens)
        if estimate.acceptance < cfg.min_acceptance or k == 0:
            estimate.steps_since_draft += 1
            if estimate.steps_since_draft < cfg.probe_interval:
                return 0
            estimate.steps_since_draft = 0
            return 1  # a probe: one draft to re-measure acceptance
        return min(k, room)

    def record(
        self, key: str, adapter: str | None, group: str, drafted: int, accepted: int
    ) -> None:
        if drafted == 0:
            return
        rate = accepted / drafted
        estimate = self._requests.setdefault(key, _Estimate(rate))
        estimate.acceptance = (1 - _EMA) * estimate.acceptance + _EMA * rate
        estimate.steps_since_draft = 0
        # A group's estimate starts from the prior: one unlucky round cannot condemn it.
        prior = self._groups.get(group, self.config.initial_acceptance)
        self._groups[group] = (1 - _EMA) * prior + _EMA * rate
        s = self.stats
        s.num_drafts += 1
        s.num_drafted_tokens += drafted
        s.num_accepted_tokens += accepted
        for position in range(accepted):
            s.accepted_per_position[position] += 1
        counts = s.per_adapter.setdefault(adapter or "base", [0, 0])
        counts[0] += drafted
        counts[1] += accepted

    def forget(self, key: str) -> None:
        self._requests.pop(key, None)
