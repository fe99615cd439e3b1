"""SpecConfig: which proposers an engine has and how eagerly it speculates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecConfig:
    """draft_model: a Hugging Face directory of a small model with the target's tokenizer,
    run in this replica (colocated); None disables colocated drafting.
    num_speculative_tokens: the most tokens drafted per step (k_max); the policy picks k.
    max_batch_size: above this many running sequences speculation steps aside (the target
    is no longer memory-bound, so extra verified positions cost throughput).
    min_acceptance: below this estimated acceptance a request stops drafting (it probes
    again every `probe_interval` steps).
    draft_cost_ratio: cost of one draft step relative to one target step (c in the speedup
    model (1 - a^(k+1)) / ((1 - a)(k c + 1))).
    remote_timeout_s: a remote proposer slower than this is skipped for the step."""

    draft_model: str | None = None
    num_speculative_tokens: int = 4
    draft_num_blocks: int = 512
    ngram_min: int = 1
    ngram_max: int = 4
    max_batch_size: int = 32
    min_acceptance: float = 0.2
    probe_interval: int = 8
    initial_acceptance: float = 0.7
    draft_cost_ratio: float = 0.1
    remote_timeout_s: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.num_speculative_tokens <= 16:
            raise ValueError("num_speculative_tokens must be in [1, 16]")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError("need 1 <= ngram_min <= ngram_max")
        if self.draft_cost_ratio < 0 or self.remote_timeout_s <= 0:
            raise ValueError("draft_cost_ratio must be >= 0 and remote_timeout_s > 0")
