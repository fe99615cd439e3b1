"""sample: every row of a step's logits at once, from a SamplingBatch; and its stages
(processed, sampled_probs, draw_rows, top_logprobs_of) for workers/step_sampling.py, which
verifies drafts between the distributions and the draw.

Per row the same operations as workers/sampler.py's reference functions (processed_logits,
sampling_probs, then draw): penalties, logit bias and min_tokens (logits_processing.py), an
optional grammar bitmask, argmax for greedy rows; for the others temperature, top-k, top-p
and min-p, a softmax and a draw. Each runs once over the rows it applies to, so a row's
result does not depend on the rows beside it: it is exactly what the row alone gives, bit
for bit, and the same seed gives the same token whatever the batch.

The draw is torch.multinomial's own (for one sample it takes argmax(probs / q) with q ~
Exp(1) from the row's generator): rows sharing a generator draw their noise in one call, in
row order, which consumes it as consecutive per-row calls would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from workers.logits_processing import apply_processing
from workers.sampler_sort import sort_descending
from workers.sampling_batch import (
    RowDraws,
    RowSubset,
    SamplingBatch,
    TopLogprobRows,
    subset_chunks,
)

_NEG_INF = float("-inf")
_FP32_MAX = torch.finfo(torch.float32).max
_BITS = torch.arange(32, dtype=torch.int32)
# Sampled rows per pass on the host (32 rows of a 8192 vocabulary: 1 MiB a temporary).
_HOST_CHUNK_ROWS = 32


@dataclass(frozen=True)
class SampledRows:
    """tokens [rows] long; logprobs [rows]: each chosen token's log-probability; top_ids and
    top_logprobs [rows, max count]: each row's best alternatives, best first (a row uses
    its first `count` columns; None when no row asked for any)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    top_ids: torch.Tensor | None = None
    top_logprobs: torch.Tensor | None = None


def sample(
    logits: torch.Tensor,
    batch: SamplingBatch,
    logprobs: torch.Tensor | None = None,
    bitmask: torch.Tensor | None = None,
) -> SampledRows:
    """The next token of every row of logits [rows, vocab] (float32, finite), and its
    log-probability. The batch's processing (penalties, logit bias, min_tokens of the rows
    that carry a history) comes first; rows without a history are taken as processed.

    logprobs [rows, vocab]: the log-probabilities to report (the model's own, before any
    processing); None: log_softmax of `logits` as given.
    bitmask [rows, ceil(vocab / 32)] int32, the structured-output hook: bit b of word w set
    when token 32 * w + b is allowed; tokens it leaves out get -inf before anything else
    (a row with every bit set is unconstrained). It must allow at least one token per row.
    """
    if logprobs is None:
        logprobs = logits.log_softmax(-1)
    tokens = _tokens(processed(logits, batch, bitmask), batch)
    chosen = logprobs.gather(1, tokens[:, None])[:, 0]
    top_ids, top_values = top_logprobs_of(logprobs, batch.top_logprobs)
    return SampledRows(tokens, chosen, top_ids, top_values)


def processed(
    logits: torch.Tensor, batch: SamplingBatch, bitmask: torch.Tensor | None = None
) -> torch.Tensor:
    """The rows after the batch's processing (penalties, logit bias, min_tokens of the rows
    with a history) and the bitmask: greedy rows take their argmax, sampled rows their
    distributions (sampled_probs) from these. `logits` itself when there is neither."""
    if batch.processing is not None:
        logits = apply_processing(logits, batch.processing)
    if bitmask is not None:
        logits = apply_token_bitmask(logits, bitmask)
    return logits


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """logits with the tokens each row's bitmask leaves out at -inf (a new tensor)."""
    bits = (bitmask.to(torch.int32)[:, :, None] >> _BITS.to(bitmask.device)) & 1
    allowed = bits.bool().flatten(1)[:, : logits.shape[-1]]
    return logits.masked_fill(~allowed, _NEG_INF)


def _tokens(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    if batch.sampled is None:
        return logits.argmax(-1)
    every = batch.greedy is None
    rows = logits if every else logits.index_select(0, batch.sampled)
    drawn = draw_rows(sampled_probs(rows, batch), batch.draws)
    if every:
        return drawn
    assert batch.greedy is not None
    tokens = torch.empty(batch.num_rows, dtype=torch.long, device=logits.device)
    tokens[batch.greedy] = logits.index_select(0, batch.greedy).argmax(-1)
    tokens[batch.sampled] = drawn
    return tokens


def sampled_probs(rows: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """The distributions the sampled rows draw from, given their logits [sampled, vocab]:
    sampling_probs of each (temperature, top-k, top-p, min-p, softmax). On the host a
    chunk of rows at a time, so that each op's temporaries stay in the CPU's cache (one
    pass over the whole [sampled, vocab] per op would stream each through memory)."""
    assert batch.temperature is not None
    n = rows.shape[0]
    if rows.device.type != "cpu" or n <= _HOST_CHUNK_ROWS:
        return _probs(rows, batch.temperature, batch.top_k, batch.top_p, batch.min_p)
    bounds = [*range(0, n, _HOST_CHUNK_ROWS), n]
    filters = zip(
        subset_chunks(batch.top_k, bounds),
        subset_chunks(batch.top_p, bounds),
        subset_chunks(batch.min_p, bounds),
        strict=True,
    )
    out = torch.empty_like(rows)
    for (start, stop), (top_k, top_p, min_p) in zip(pairwise(bounds), filters, strict=True):
        temperature = batch.temperature[start:stop]
        out[start:stop] = _probs(rows[start:stop], temperature, top_k, top_p, min_p)
    return out


def _probs(
    rows: torch.Tensor,
    temperature: torch.Tensor,
    top_k: RowSubset | None,
    top_p: RowSubset | None,
    min_p: RowSubset | None,
) -> torch.Tensor:
    scaled = (rows / temperature).clamp(-_FP32_MAX, _FP32_MAX)
    x = torch.where(torch.isfinite(rows), scaled, rows)
    x = _on_rows(x, top_k, _top_k)
    x = _on_rows(x, top_p, _top_p)
    x = _on_rows(x, min_p, _min_p)
    return x.softmax(-1)


RowOp = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _on_rows(x: torch.Tensor, rows: RowSubset | None, op: RowOp) -> torch.Tensor:
    """op(x[rows], values) written back into those rows, in place: x is sampled_probs' own
    scratch (x itself when rows is None)."""
    if rows is None:
        return x
    if rows.full:
        return op(x, rows.values)
    x[rows.index] = op(x.index_select(0, rows.index), rows.values)
    return x


def _top_k(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Keep each row's k largest (0 < k < vocab): below the k-th largest value is -inf."""
    kth = torch.topk(x, int(k.max())).values.gather(1, k - 1)
    return x.masked_fill(x < kth, _NEG_INF)


def _top_p(x: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of most likely tokens reaching top_p; the best always stays."""
    sorted_logits, order = sort_descending(x)  # ties in token order, as filter_logits
    probs = sorted_logits.softmax(-1)
    drop_sorted = (probs.cumsum(-1) - probs) >= top_p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return x.masked_fill(drop, _NEG_INF)


def _min_p(x: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drop tokens below min_p times the row's top probability."""
    probs = x.softmax(-1)
    return x.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, _NEG_INF)


def draw_rows(probs: torch.Tensor, draws: Sequence[RowDraws]) -> torch.Tensor:
    """One token per row of probs [rows, vocab], as torch.multinomial(row, 1) with the
    row's generator draws it (`draws` address the rows). The noise is drawn where the
    generators are (the host's generators for host logits: in place, a run of rows at a
    time) and moved once."""
    where = draws[0].generator.device
    noise = torch.empty(probs.shape, dtype=probs.dtype, device=where)
    for d in draws:
        g = d.generator
        if d.run is not None:
            rows = noise[d.run[0] : d.run[1]]
            if g.device == where:
                rows.exponential_(1, generator=g)
            else:
                q = torch.empty(rows.shape, dtype=probs.dtype, device=g.device)
                rows.copy_(q.exponential_(1, generator=g))
            continue
        assert d.index is not None
        q = torch.empty((d.index.numel(), probs.shape[1]), dtype=probs.dtype, device=g.device)
        noise[d.index.to(where)] = q.exponential_(1, generator=g).to(where)
    noise = noise.to(probs.device)
    return torch.div(probs, noise, out=noise).argmax(-1)


def top_logprobs_of(
    logprobs: torch.Tensor, groups: Sequence[TopLogprobRows]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """[rows, max count] ids and values: one topk per distinct count (so a row's
    alternatives are those topk gives it alone, ties included); None without groups."""
    width = max((g.count for g in groups), default=0)
    if not width:
        return None, None
    vocab = logprobs.shape[-1]
    rows = logprobs.shape[0]
    ids = torch.zeros((rows, min(width, vocab)), dtype=torch.long, device=logprobs.device)
    values = torch.full(ids.shape, _NEG_INF, dtype=logprobs.dtype, device=logprobs.device)
    for group in groups:
        k = min(group.count, vocab)
        best = torch.topk(logprobs.index_select(0, group.index), k)
        ids[group.index, :k] = best.indices
        values[group.index, :k] = best.values
    return ids, values
