"""SamplingParams: how one request is decoded. Validated on construction (ValueError).

Every float must be finite and every bound is named in the message, so a value the
constructor lets through is one the sampler handles without NaN (tests/workers/
test_sampling_fuzz.py feeds it the extremes). Vocabulary-dependent checks (token ids) need
the model and live in `LLMEngine.validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_GREEDY_EPS = 1e-5
# torch.Generator.manual_seed takes a 64-bit value; OpenAI's seed is an int64.
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
MAX_LOGPROBS = 20
MAX_LENGTH_PENALTY = 100.0
# A repetition penalty divides (or multiplies) logits: outside this range it only says
# "never repeat" or "always repeat" in a way float32 cannot hold.
REPETITION_PENALTY_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request, named as in vLLM.

    temperature 0 means greedy. `n` independent samples share the prompt's KV blocks.
    beam_width > 1 selects beam search (deterministic); `n` then says how many of the best
    beams to return. top_k 0 or -1 disables top-k.
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
    # Log-probabilities of the prompt's tokens (each given the ones before it), with this
    # many top alternatives; from the prefill's own logits (no prefix-cache reuse then).
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        self._check_types()
        _check(self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}")
        _check(
            0 <= self.min_tokens <= self.max_tokens,
            f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}",
        )
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(self.top_k >= -1, f"top_k must be >= 1, or 0 or -1 to disable, got {self.top_k}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        low, high = REPETITION_PENALTY_RANGE
        _check(
            low <= self.repetition_penalty <= high,
            f"repetition_penalty must be in [{low:g}, {high:g}] (1 disables it), "
            f"got {self.repetition_penalty}",
        )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value}")
        _check(
            abs(self.length_penalty) <= MAX_LENGTH_PENALTY,
            f"length_penalty must be in [-{MAX_LENGTH_PENALTY:g}, {MAX_LENGTH_PENALTY:g}], "
            f"got {self.length_penalty}",
        )
        _check(
            self.seed is None or SEED_MIN <= self.seed <= SEED_MAX,
            f"seed must be in [{SEED_MIN}, {SEED_MAX}] (a 64-bit integer), got {self.seed}",
        )
        _check(
            self.logprobs is None or 0 <= self.logprobs <= MAX_LOGPROBS,
            f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}",
        )
        _check(
            self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= MAX_LOGPROBS,
            f"prompt_logprobs must be in [0, {MAX_LOGPROBS}], got {self.prompt_logprobs}",
        )
        _check(self.n >= 1, f"n must be >= 1, got {self.n}")
        _check(self.beam_width >= 1, f"beam_width must be >= 1, got {self.beam_width}")
        _check(
            self.beam_width == 1 or self.n <= self.beam_width,
            f"n ({self.n}) must be <= beam_width ({self.beam_width}) for beam search",
        )
        _check(
            all(t >= 0 for t in self.stop_token_ids),
            f"stop_token_ids must be >= 0, got {list(self.stop_token_ids)}",
        )

    def _check_types(self) -> None:
        """bool is an int in Python, and JSON floats may be inf or NaN: refuse both."""
        for name in ("max_tokens", "min_tokens", "top_k", "n", "beam_width"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}",
            )
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "repetition_penalty",
            "presence_penalty",
            "frequency_penalty",
            "length_penalty",
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and not isinstance(value, bool),
                f"{name} must be a number, got {value!r}",
            )
            _check(math.isfinite(value), f"{name} must be a finite number, got {value}")

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
