"""Beam search over a request's live beams, with the semantics of transformers' generate
(num_beams, length_penalty, early_stopping=False)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

_NEG = -1.0e9


@dataclass(frozen=True)
class Hypothesis:
    """A finished beam: its output tokens and length-normalized score."""

    output_token_ids: tuple[int, ...]
    score: float


@dataclass(frozen=True)
class BeamChoice:
    """A beam for the next step: live beam `parent` extended by `token_id`."""

    parent: int
    token_id: int
    cum_logprob: float


@dataclass
class BeamState:
    width: int
    length_penalty: float
    finished: list[Hypothesis] = field(default_factory=list)
    improvable: bool = True
    done: bool = False

    def reset(self) -> None:
        self.finished.clear()
        self.improvable = True
        self.done = False

    def best(self, count: int) -> list[Hypothesis]:
        return sorted(self.finished, key=lambda h: h.score, reverse=True)[:count]


def beams_to_keep(width: int, num_stop_ids: int) -> int:
    """Candidates considered per step: enough that `width` of them can continue."""
    return max(2, 1 + num_stop_ids) * width


def beam_step(
    state: BeamState,
    outputs: list[tuple[int, ...]],
    cum_logprobs: list[float],
    topk: list[tuple[tuple[int, float], ...]],
    hits_stop: Callable[[int], bool],
    num_generated: int,
    num_stop_ids: int,
) -> list[BeamChoice]:
    """Advance every live beam by one token.

    outputs[b], cum_logprobs[b], topk[b]: beam b's output tokens, summed log-probability and
    best next tokens. hits_stop(token_id) says whether a continuation ends (stop token, or
    the length limit). Updates `state` (finished hypotheses, done) and returns the beams
    that continue, best first.
    """
    keep = beams_to_keep(state.width, num_stop_ids)
    candidates = sorted(
        ((cum_logprobs[b] + lp, b, tok) for b, row in enumerate(topk) for tok, lp in row),
        key=lambda c: -c[0],
    )[:keep]
    ended = [hits_stop(tok) for _, _, tok in candidates]
    length = num_generated + 1
    if state.improvable:
        for rank, ((score, b, tok), hit) in enumerate(zip(candidates, ended, strict=True)):
            if hit and rank < state.width:
                norm = score / (length**state.length_penalty)
                state.finished.append(Hypothesis((*outputs[b], tok), norm))
        state.finished = state.best(state.width)
    running = [c for c, hit in zip(candidates, ended, strict=True) if not hit][: state.width]
    best_running = running[0][0] if running else _NEG
    if len(state.finished) == state.width:
        worst = min(h.score for h in state.finished)
        best_possible = best_running / (length**state.length_penalty)
        state.improvable = state.improvable and best_possible > worst
    state.done = not state.improvable or all(ended)
    return [BeamChoice(b, tok, score) for score, b, tok in running]
