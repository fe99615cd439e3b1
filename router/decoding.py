"""How a completions request's choices are made: the engine's samples or beams, which of
them come back (best_of), and whether the prompt is echoed or only scored (max_tokens 0).

vLLM's semantics: best_of >= n samples are drawn and the n with the highest cumulative
log-probability are returned; use_beam_search runs beam search of width best_of (or n);
echo puts the prompt (and, with logprobs, its log-probabilities) before the completion, and
echo with max_tokens 0 scores the prompt without generating.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.errors import bad_request
from router.schema import CompletionRequest, SamplingFields


@dataclass(frozen=True)
class DecodingPlan:
    """num_samples: the engine's n; beam_width: its beam width (1: no beams); keep: the
    choices returned (the most likely of num_samples); greedy: force temperature 0;
    prompt_logprobs: the top-N of the echoed prompt's logprobs (None: not needed)."""

    num_samples: int
    beam_width: int
    keep: int
    greedy: bool = False
    echo: bool = False
    prompt_logprobs: int | None = None
    score_only: bool = False

    @property
    def ranks_samples(self) -> bool:
        return self.keep < self.num_samples and self.beam_width == 1


def plan_decoding(req: SamplingFields, logprobs: int | None) -> DecodingPlan:
    if not isinstance(req, CompletionRequest):
        return DecodingPlan(req.n, req.beam_width, req.n)
    best_of = req.best_of
    if best_of is not None and best_of < req.n:
        raise bad_request(f"best_of ({best_of}) must be >= n ({req.n})", "best_of")
    echo = req.echo
    score_only = req.max_tokens == 0
    if score_only and not echo:
        raise bad_request("max_tokens 0 only scores the prompt: it needs echo: true", "max_tokens")
    prompt_logprobs = logprobs if echo else None
    if req.use_beam_search:
        width = max(req.beam_width, best_of or req.n)
        return DecodingPlan(req.n, width, req.n, width == 1, echo, prompt_logprobs, score_only)
    samples = best_of or req.n
    if samples > req.n and req.stream:
        raise bad_request("best_of > n cannot be streamed; set stream: false", "best_of")
    return DecodingPlan(samples, req.beam_width, req.n, False, echo, prompt_logprobs, score_only)
