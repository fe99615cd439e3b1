"""Verification of drafted tokens against the target, as pure functions.

Greedy requests accept while the draft equals the target's argmax. Sampled requests use
rejection sampling: draft token x is accepted with probability min(1, p(x) / q(x)); at the
first rejection the token is drawn from max(0, p - q) normalized. Either way the emitted
tokens follow the target's distribution exactly, and one more token (the correction, or a
bonus after all drafts are accepted) comes from the target.
"""

from __future__ import annotations

import torch

from workers.sampler import draw
from workers.sampling_params import SamplingParams


def verify_drafts(
    target_probs: torch.Tensor,
    draft_tokens: list[int],
    draft_probs: torch.Tensor | None,
    params: SamplingParams,
    generator: torch.Generator | None,
) -> list[int]:
    """Tokens to append: the accepted drafts and one token from the target.

    target_probs [k + 1, vocab]: the target's sampling distribution at each drafted position
    (row j assumes drafts 0..j-1 were accepted) and after the last one.
    draft_probs [k, vocab]: the distributions the drafts were drawn from; None means the
    proposer was deterministic (one-hot at each drafted token).
    """
    if params.greedy:
        return accept_greedy(target_probs.argmax(-1).tolist(), tuple(draft_tokens))
    out: list[int] = []
    for j, token in enumerate(draft_tokens):
        p = target_probs[j]
        q = _draft_distribution(draft_probs, j, token, p.shape[-1])
        u = float(torch.rand((), generator=generator))
        # A token the target gives probability 0 (masked by a grammar, say) is never
        # accepted, even when u is exactly 0.
        if float(p[token]) > 0 and u * float(q[token]) <= float(p[token]):
            out.append(token)
            continue
        out.append(_draw_residual(p, q, params, generator))
        return out
    out.append(draw(target_probs[len(draft_tokens)], params, generator))
    return out


def accept_greedy(target_argmax: list[int], draft_tokens: tuple[int, ...]) -> list[int]:
    """verify_drafts for greedy requests given the target's argmax at each of the k + 1
    positions: the drafts that match, then the target's own token."""
    out: list[int] = []
    for best, token in zip(target_argmax, draft_tokens, strict=False):
        out.append(best)
        if best != token:
            return out
    out.append(target_argmax[len(draft_tokens)])
    return out


def _draft_distribution(
    draft_probs: torch.Tensor | None, j: int, token: int, vocab: int
) -> torch.Tensor:
    if draft_probs is None:
        return torch.nn.functional.one_hot(torch.tensor(token), vocab).float()
    return draft_probs[j]


def _draw_residual(
    p: torch.Tensor, q: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    residual = (p - q).clamp(min=0)
    total = float(residual.sum())
    if total <= 0:  # p == q up to rounding: a rejection is (almost) impossible; draw from p
        return draw(p, params, generator)
    return int(torch.multinomial(residual / total, 1, generator=generator))
