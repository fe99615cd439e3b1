"""The model runner's batched sampling of a step: every sample row of every sequence (its
one row, or with drafts to verify one row per drafted position and one after them) in one
SamplingBatch, processed at once (penalties, logit bias and min_tokens, as each row's
history stands, drafts included), masked by one grammar bitmask, turned into distributions
at once, then verified (workers/spec/verify.py) and drawn in one call.

Each row gets exactly what the per-row reference (workers/sampler.py, verify_drafts) gives
it; a sequence with a generator of its own gets the same tokens whatever the batch.
Sequences without one share the runner's generator, in order: their acceptance tests come
first, then every last token's draw.

What can fail for one request (its settings, its history, its grammar's mask) fails before
any generator is drawn from, so the caller can run the sequences again one at a time to
find the culprit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workers.batch_sampler import draw_rows, processed, sampled_probs, top_logprobs_of
from workers.logits_processing import TokenHistory
from workers.protocol import TokenLogprob
from workers.sampling_batch import SamplingBatch, SamplingRow, prepare, row_draws
from workers.sampling_batch import top_logprob_groups as groups_of
from workers.scheduler_output import ScheduledSeq
from workers.spec.verify import SampledDrafts, accept_greedy, verify_sampled
from workers.structured.decoding import StepMask


@dataclass(frozen=True)
class PendingSeq:
    """A sequence that samples this step from rows row.. of the step's logits. stop_ids:
    the tokens min_tokens holds back (read only while it is below min_tokens); mask: its
    grammar's masks for this step (None: unconstrained)."""

    seq: ScheduledSeq
    row: int
    stop_ids: frozenset[int] = frozenset()
    mask: StepMask | None = None

    @property
    def drafts(self) -> tuple[int, ...]:
        """The drafts to verify: with a grammar, up to the first one it rejects (which then
        has probability 0; the rows after it are never reached)."""
        drafts = self.seq.spec_token_ids
        return drafts if self.mask is None else drafts[: self.mask.num_valid_drafts + 1]

    def history(self, j: int) -> TokenHistory | None:
        """What processing row j needs (drafts 0..j-1 accepted); None: nothing to apply."""
        s = self.seq
        params = s.sampling
        num_outputs = s.num_output_tokens + j
        held = num_outputs < params.min_tokens
        if not (params.has_penalties or params.logit_bias or held):
            return None
        outputs = s.output_token_ids + s.spec_token_ids[:j] if params.has_penalties else ()
        stops = tuple(self.stop_ids) if held else ()
        return TokenHistory(s.prompt_token_ids, outputs, stops, num_outputs)


def sample_seqs(
    seqs: Sequence[PendingSeq],
    logits: torch.Tensor,
    logprobs: torch.Tensor,
    generator: torch.Generator | None,
) -> list[tuple[TokenLogprob, ...]]:
    """Each sequence's tokens (the accepted drafts, then one from the target), each with its
    log-probability in `logprobs` (the model's own, [step rows, vocab]) and as many top
    alternatives as its request asked for. Sequences without a generator of their own draw
    from `generator`."""
    if not seqs:
        return []
    starts, index = _layout(seqs)
    work, raw = _rows(logits, logprobs, index)
    rows = [
        SamplingRow(p.seq.sampling, p.seq.generator, 0, p.history(j))
        for p in seqs
        for j in range(len(p.drafts) + 1)
    ]
    batch = prepare(rows, logits.shape[-1], logits.device, generator)
    x = processed(work, batch, _bitmask(seqs, starts, len(rows), logits.device))
    tokens = _greedy_tokens(x, batch, seqs)
    tokens.update(_sampled_tokens(x, batch, seqs, generator))
    return _entries(seqs, starts, [tokens[i] for i in range(len(seqs))], raw)


def _layout(seqs: Sequence[PendingSeq]) -> tuple[list[int], list[int]]:
    """Each sequence's first row in the batch, and the step's logit row of each batch row."""
    starts: list[int] = []
    index: list[int] = []
    for p in seqs:
        starts.append(len(index))
        index += range(p.row, p.row + len(p.drafts) + 1)
    return starts, index


def _rows(
    logits: torch.Tensor, logprobs: torch.Tensor, index: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    if index == list(range(logits.shape[0])):
        return logits, logprobs
    positions = torch.tensor(index, dtype=torch.long, device=logits.device)
    return logits.index_select(0, positions), logprobs.index_select(0, positions)


def _bitmask(
    seqs: Sequence[PendingSeq], starts: list[int], num_rows: int, device: torch.device
) -> torch.Tensor | None:
    """[rows, words] int32: each constrained row's mask, every bit set for the others (the
    rows of free sequences, and a constrained one's row after a draft its grammar rejects)."""
    masks = [(start, p.mask) for start, p in zip(starts, seqs, strict=True) if p.mask is not None]
    if not masks:
        return None
    full = torch.full((num_rows, masks[0][1].bitmask.shape[-1]), -1, dtype=torch.int32)
    for start, mask in masks:
        full[start : start + mask.bitmask.shape[0]] = mask.bitmask
    return full.to(device)


def _greedy_tokens(
    x: torch.Tensor, batch: SamplingBatch, seqs: Sequence[PendingSeq]
) -> dict[int, list[int]]:
    """The greedy sequences' tokens: drafts while they equal the argmax, then the argmax."""
    if batch.greedy is None:
        return {}
    rows = x if batch.sampled is None else x.index_select(0, batch.greedy)
    best = rows.argmax(-1).tolist()
    out: dict[int, list[int]] = {}
    at = 0
    for i, p in enumerate(seqs):
        if p.seq.sampling.greedy:
            drafts = p.drafts
            out[i] = accept_greedy(best[at : at + len(drafts) + 1], drafts)
            at += len(drafts) + 1
    return out


def _sampled_tokens(
    x: torch.Tensor,
    batch: SamplingBatch,
    seqs: Sequence[PendingSeq],
    generator: torch.Generator | None,
) -> dict[int, list[int]]:
    """The sampled sequences' tokens: their drafts verified against the distributions, the
    last token of each drawn in one call."""
    if batch.sampled is None:
        return {}
    rows = x if batch.greedy is None else x.index_select(0, batch.sampled)
    probs = sampled_probs(rows, batch)
    chosen = [i for i, p in enumerate(seqs) if not p.seq.sampling.greedy]
    if not any(seqs[i].drafts for i in chosen):  # one row each: the batch's own draws
        drawn = draw_rows(probs, batch.draws).tolist()
        return {i: [t] for i, t in zip(chosen, drawn, strict=True)}
    shared = generator if generator is not None else torch.default_generator
    spans: list[SampledDrafts] = []
    first = 0
    for i in chosen:
        p = seqs[i]
        drafts = p.drafts
        q = p.seq.spec_probs
        spans.append(
            SampledDrafts(
                first, drafts, None if q is None else q[: len(drafts)], p.seq.generator or shared
            )
        )
        first += len(drafts) + 1
    verified = verify_sampled(probs, spans)
    draws = row_draws([seqs[i].seq.generator for i in chosen], shared, probs.device)
    drawn = draw_rows(verified.final, draws).tolist()
    return {
        i: [*accepted, t] for i, accepted, t in zip(chosen, verified.accepted, drawn, strict=True)
    }


def _entries(
    seqs: Sequence[PendingSeq],
    starts: list[int],
    tokens: list[list[int]],
    raw: torch.Tensor,
) -> list[tuple[TokenLogprob, ...]]:
    """Token j of a sequence with its log-probability at its row j, and its alternatives."""
    rows = [start + j for start, ts in zip(starts, tokens, strict=True) for j in range(len(ts))]
    flat = [t for ts in tokens for t in ts]
    device = raw.device
    index = torch.tensor([rows, flat], dtype=torch.long, device=device)
    chosen = raw[index[0], index[1]].tolist()
    counts = [0] * raw.shape[0]  # per batch row: how many alternatives it returns
    for start, p, ts in zip(starts, seqs, tokens, strict=True):
        counts[start : start + len(ts)] = [p.seq.sampling.logprobs or 0] * len(ts)
    top_ids, top_values = top_logprobs_of(raw, groups_of(counts, device))
    ids = top_ids.tolist() if top_ids is not None else None
    values = top_values.tolist() if top_values is not None else None
    out, at = [], 0
    for ts in tokens:
        out.append(
            tuple(
                TokenLogprob(t, chosen[at + j], _top(ids, values, rows[at + j], counts))
                for j, t in enumerate(ts)
            )
        )
        at += len(ts)
    return out


def _top(
    ids: list[list[int]] | None, values: list[list[float]] | None, row: int, counts: list[int]
) -> tuple[tuple[int, float], ...]:
    count = counts[row]
    if not count or ids is None or values is None:
        return ()
    return tuple(zip(ids[row][:count], values[row][:count], strict=True))
