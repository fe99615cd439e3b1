"""SpecConfig: which proposers an engine has and how eagerly it speculates."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpecConfig:
    """Each option's `metadata["description"]` is its user-facing help (config.yaml's
    `llm.engine.spec`, derived in deployments/engine_settings.py)."""

    draft_model: str | None = field(
        default=None,
        metadata={
            "description": "Hugging Face directory of a small model with the target's "
            "tokenizer, run in this replica (colocated drafting); unset: none."
        },
    )
    num_speculative_tokens: int = field(
        default=4,
        metadata={"description": "Most tokens drafted per step (k_max, 1 to 16); policy picks k."},
    )
    draft_num_blocks: int = field(
        default=512, metadata={"description": "KV blocks of the colocated draft."}
    )
    ngram_min: int = field(
        default=1, metadata={"description": "Shortest n-gram prompt lookup matches (>= 1)."}
    )
    ngram_max: int = field(
        default=4, metadata={"description": "Longest n-gram prompt lookup matches (>= ngram_min)."}
    )
    max_batch_size: int = field(
        default=32,
        metadata={
            "description": "Above this many running sequences speculation steps aside (the "
            "target is no longer memory-bound; extra verified positions cost throughput)."
        },
    )
    min_acceptance: float = field(
        default=0.2,
        metadata={"description": "Below this estimated acceptance a request stops drafting."},
    )
    probe_interval: int = field(
        default=8,
        metadata={
            "description": "Steps a request that stopped drafting waits to probe with one draft."
        },
    )
    initial_acceptance: float = field(
        default=0.7,
        metadata={"description": "Acceptance a new request assumes until its group's is measured."},
    )
    draft_cost_ratio: float = field(
        default=0.1,
        metadata={
            "description": "Cost of a draft step relative to a target step (c in the speedup "
            "model (1 - a^(k+1)) / ((1 - a)(k c + 1)))."
        },
    )
    throughput_gate: bool = field(
        default=True,
        metadata={
            "description": "Draft only in batch sizes where drafting has measured faster than "
            "plain decoding (false: every step the acceptance policy allows drafts)."
        },
    )
    remote_timeout_s: float = field(
        default=0.2, metadata={"description": "A remote proposer slower than this is skipped."}
    )

    def __post_init__(self) -> None:
        if not 1 <= self.num_speculative_tokens <= 16:
            raise ValueError("num_speculative_tokens must be in [1, 16]")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError("need 1 <= ngram_min <= ngram_max")
        if self.draft_cost_ratio < 0 or self.remote_timeout_s <= 0:
            raise ValueError("draft_cost_ratio must be >= 0 and remote_timeout_s > 0")
