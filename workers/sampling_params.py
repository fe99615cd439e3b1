"""SamplingParams: how one request is decoded. Validated on construction (ValueError)."""

from __future__ import annotations

from dataclasses import dataclass

_GREEDY_EPS = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request, named as in vLLM.

    temperature 0 means greedy. `n` independent samples share the prompt's KV blocks.
    beam_width > 1 selects beam search (deterministic); `n` then says how many of the best
    beams to return.
    """

    max_tokens: int = 16
    min_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    n: int = 1
    beam_width: int = 1
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        _check(self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}")
        _check(
            0 <= self.min_tokens <= self.max_tokens,
            f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}",
        )
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        _check(
            self.repetition_penalty > 0,
            f"repetition_penalty must be > 0, got {self.repetition_penalty}",
        )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value}")
        _check(
            self.logprobs is None or self.logprobs >= 0,
            f"logprobs must be >= 0, got {self.logprobs}",
        )
        _check(self.n >= 1, f"n must be >= 1, got {self.n}")
        _check(self.beam_width >= 1, f"beam_width must be >= 1, got {self.beam_width}")
        _check(
            self.beam_width == 1 or self.n <= self.beam_width,
            f"n ({self.n}) must be <= beam_width ({self.beam_width}) for beam search",
        )
        _check(
            all(t >= 0 for t in self.stop_token_ids),
            f"stop_token_ids must be >= 0, got {self.stop_token_ids}",
        )

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_EPS

    @property
    def use_beam_search(self) -> bool:
        return self.beam_width > 1

    @property
    def has_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
