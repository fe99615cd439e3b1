"""Verification of drafted tokens against the target, as pure functions.

Greedy requests accept while the draft equals the target's argmax. Sampled requests use
rejection sampling: draft token x is accepted with probability min(1, p(x) / q(x)); at the
first rejection the token is drawn from max(0, p - q) normalized. Either way the emitted
tokens follow the target's distribution exactly, and one more token (the correction, or a
bonus after all drafts are accepted) comes from the target.

verify_drafts does it for one sequence; verify_sampled for a whole step's sampled sequences
at once, bit for bit as verify_drafts per sequence up to the last token's draw: it returns
the distribution each last token is drawn from, for the caller to draw them all in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SampledDrafts:
    """One sampled sequence's rows of a step's sampling distributions: rows first ..
    first + len(drafts) (row j assumes drafts 0..j-1 accepted), its drafts, the
    distributions they were drawn from ([k, vocab]; None: one-hot at each drafted token) and
    the generator its acceptance tests draw from."""

    first: int
    drafts: tuple[int, ...]
    draft_probs: torch.Tensor | None
    generator: torch.Generator


@dataclass(frozen=True)
class Verified:
    """accepted: each sequence's accepted drafts; final [sequences, vocab]: the distribution
    its last token is drawn from (the residual max(0, p - q) normalized at its first
    rejection, else the target's after its last draft)."""

    accepted: tuple[tuple[int, ...], ...]
    final: torch.Tensor


def verify_sampled(probs: torch.Tensor, seqs: Sequence[SampledDrafts]) -> Verified:
    """verify_drafts of every sequence, given the step's distributions probs [rows, vocab]:
    the same acceptance tests from each sequence's generator, in order; each rejection's
    residual is taken as verify_drafts takes it. A sequence without drafts accepts nothing
    and draws from its one row."""
    rows = [s.first + j for s in seqs for j in range(len(s.drafts))]
    tokens = [t for s in seqs for t in s.drafts]
    p_at = probs[rows, tokens].tolist() if rows else []
    accepted: list[tuple[int, ...]] = []
    final_rows: list[int] = []
    rejected: list[tuple[int, int]] = []  # (sequence, position of its rejected draft)
    at = 0
    for i, s in enumerate(seqs):
        n = _num_accepted(s, p_at[at : at + len(s.drafts)])
        at += len(s.drafts)
        accepted.append(s.drafts[:n])
        final_rows.append(s.first + n)
        if n < len(s.drafts):
            rejected.append((i, n))
    if final_rows == list(range(probs.shape[0])):
        final = probs
    else:
        final = probs.index_select(0, torch.tensor(final_rows, device=probs.device))
    if rejected:  # then final is a copy: some sequence has drafts
        _write_residuals(final, seqs, rejected)
    return Verified(tuple(accepted), final)


def _num_accepted(s: SampledDrafts, p_at: list[float]) -> int:
    """How many of the drafts pass their test: u * q(x) <= p(x), u ~ U(0, 1), p(x) > 0."""
    if not s.drafts:
        return 0
    k = len(s.drafts)
    if s.draft_probs is None:
        q_at = [1.0] * k
    else:
        q_at = s.draft_probs[torch.arange(k), torch.tensor(s.drafts)].tolist()
    for j in range(k):
        u = float(torch.rand((), generator=s.generator))
        if not (p_at[j] > 0 and u * q_at[j] <= p_at[j]):
            return j
    return k


def _write_residuals(
    final: torch.Tensor, seqs: Sequence[SampledDrafts], rejected: list[tuple[int, int]]
) -> None:
    """Each rejecting sequence's row of final, in place, replaced by max(0, p - q)
    normalized (p itself where that is 0 everywhere: p == q up to rounding), as
    _draw_residual takes it."""
    index = torch.tensor([i for i, _ in rejected], device=final.device)
    p = final.index_select(0, index)
    q = torch.zeros_like(p)
    for r, (i, j) in enumerate(rejected):
        s = seqs[i]
        if s.draft_probs is None:
            q[r, s.drafts[j]] = 1.0
        else:
            q[r] = s.draft_probs[j]
    residual = (p - q).clamp(min=0)
    # Each row's own sum: a sum over [rows, vocab] may round otherwise than the row's alone.
    total = torch.stack([row.sum() for row in residual])
    normalized = torch.where(total[:, None] > 0, residual / total[:, None], p)
    final[index] = normalized
