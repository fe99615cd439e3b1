"""SamplingBatch: one step's sampling settings as tensors, built once per step by `prepare`
from each row's SamplingParams and generator; workers/batch_sampler.py applies them to the
step's [rows, vocab] logits at once.

Row subsets are positions: greedy and sampled rows are positions in the batch; the rows a
filter applies to (top-k, top-p, min-p) and the rows a generator draws for are positions
among the sampled rows. A subset of every row it could hold is marked `full`, so the
sampler skips its gather and scatter. Python loops over rows happen here only, once per
step, on host values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from workers.host_copy import to_device
from workers.logits_processing import ProcessingBatch, TokenHistory, prepare_processing
from workers.sampling_params import SamplingParams


@dataclass(frozen=True)
class SamplingRow:
    """One row to sample: its settings, its own generator (None: the batch's shared one),
    how many top log-probabilities to return with the chosen token's (0: none), and the
    token history its penalties, logit bias and min_tokens need (None: the row comes with
    them applied, as the runner's rows do, and the batch leaves it as it is)."""

    params: SamplingParams
    generator: torch.Generator | None = None
    num_top_logprobs: int = 0
    history: TokenHistory | None = None


@dataclass(frozen=True)
class RowSubset:
    """Some positions of a row set, each with its value of a setting ([m, 1])."""

    index: torch.Tensor  # long [m]
    values: torch.Tensor  # [m, 1]
    full: bool  # the subset is every row, in order (index need not be applied)


@dataclass(frozen=True)
class RowDraws:
    """The sampled rows one generator draws for, in row order (positions among them):
    run (start, stop) when they are consecutive, as a row with its own generator is, else
    index [m] long."""

    generator: torch.Generator
    run: tuple[int, int] | None
    index: torch.Tensor | None


@dataclass(frozen=True)
class TopLogprobRows:
    """Rows that return the same number of top log-probabilities."""

    count: int
    index: torch.Tensor  # long [m], positions in the batch


@dataclass(frozen=True)
class SamplingBatch:
    """A step's rows as tensors. processing: penalties, logit bias and min_tokens of the
    rows with a history (None: none); greedy/sampled: positions drawn by argmax and at
    random (None: no such row); temperature [sampled, 1]; the filters and draws address the
    sampled rows; top_logprobs groups rows by how many alternatives they return."""

    num_rows: int
    vocab_size: int
    processing: ProcessingBatch | None
    greedy: torch.Tensor | None
    sampled: torch.Tensor | None
    temperature: torch.Tensor | None
    top_k: RowSubset | None
    top_p: RowSubset | None
    min_p: RowSubset | None
    draws: tuple[RowDraws, ...]
    top_logprobs: tuple[TopLogprobRows, ...]

    @property
    def all_greedy(self) -> bool:
        return self.sampled is None

    @property
    def max_top_logprobs(self) -> int:
        return max((g.count for g in self.top_logprobs), default=0)


def sampling_row(
    params: SamplingParams,
    generator: torch.Generator | None = None,
    top: int | None = None,
    history: TokenHistory | None = None,
) -> SamplingRow:
    """A row of a request: `top` alternatives, by default the request's logprobs."""
    count = (params.logprobs or 0) if top is None else top
    return SamplingRow(params, generator, count, history)


def prepare(
    rows: Sequence[SamplingRow],
    vocab_size: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> SamplingBatch:
    """The batch of `rows` for logits [len(rows), vocab_size] on `device`; rows without a
    generator draw from `generator` (None: torch's default one), in row order."""
    greedy = [i for i, r in enumerate(rows) if r.params.greedy]
    sampled = [i for i, r in enumerate(rows) if not r.params.greedy]
    params = [rows[i].params for i in sampled]

    def positions(values: list[int]) -> torch.Tensor:
        return to_device(values, device)

    def subset(
        keep: list[int], values: list[float] | list[int], dtype: torch.dtype
    ) -> RowSubset | None:
        if not keep:
            return None
        # float64 first: a value float32 cannot hold becomes inf as the sampler's scalar
        # arithmetic would make it, rather than an overflow error.
        column = torch.tensor(values, dtype=torch.float64 if dtype.is_floating_point else dtype)
        return RowSubset(
            positions(keep), column.to(dtype).to(device)[:, None], len(keep) == len(params)
        )

    top_k = [j for j, p in enumerate(params) if 0 < p.top_k < vocab_size]
    top_p = [j for j, p in enumerate(params) if p.top_p < 1.0]
    min_p = [j for j, p in enumerate(params) if p.min_p > 0.0]
    temperature = (
        torch.tensor([p.temperature for p in params], dtype=torch.float64)
        .float()
        .to(device)[:, None]
        if params
        else None
    )
    return SamplingBatch(
        num_rows=len(rows),
        vocab_size=vocab_size,
        processing=prepare_processing(
            [None if r.history is None else (r.params, r.history) for r in rows],
            vocab_size,
            device,
        ),
        greedy=positions(greedy) if greedy else None,
        sampled=positions(sampled) if sampled else None,
        temperature=temperature,
        top_k=subset(top_k, [params[j].top_k for j in top_k], torch.long),
        top_p=subset(top_p, [params[j].top_p for j in top_p], torch.float32),
        min_p=subset(min_p, [params[j].min_p for j in min_p], torch.float32),
        draws=row_draws([rows[i].generator for i in sampled], generator, device),
        top_logprobs=top_logprob_groups([r.num_top_logprobs for r in rows], device),
    )


def subset_chunks(subset: RowSubset | None, bounds: Sequence[int]) -> list[RowSubset | None]:
    """The subset split by row chunks [bounds[c], bounds[c + 1]): each chunk's own
    positions (from its first row) and values; None for a chunk it holds no row of."""
    chunks = list(pairwise(bounds))
    if subset is None:
        return [None] * len(chunks)
    if subset.full:
        cuts = list(bounds)
    else:
        limits = torch.tensor(bounds, dtype=subset.index.dtype, device=subset.index.device)
        cuts = torch.searchsorted(subset.index, limits).tolist()
    out: list[RowSubset | None] = []
    for c, (start, stop) in enumerate(chunks):
        lo, hi = cuts[c], cuts[c + 1]
        if lo == hi:
            out.append(None)
            continue
        index = subset.index[lo:hi] - start
        out.append(RowSubset(index, subset.values[lo:hi], hi - lo == stop - start))
    return out


def row_draws(
    generators: Sequence[torch.Generator | None],
    shared: torch.Generator | None,
    device: torch.device,
) -> tuple[RowDraws, ...]:
    """Rows grouped by generator (None: `shared`, or torch's default one): one draw call
    per generator, rows in order."""
    fallback = shared if shared is not None else torch.default_generator
    groups: dict[int, tuple[torch.Generator, list[int]]] = {}
    for j, g in enumerate(generators):
        gen = g if g is not None else fallback
        groups.setdefault(id(gen), (gen, []))[1].append(j)
    draws = []
    for gen, index in groups.values():
        start, stop = index[0], index[-1] + 1
        if stop - start == len(index):
            draws.append(RowDraws(gen, (start, stop), None))
        else:
            draws.append(RowDraws(gen, None, to_device(index, device)))
    return tuple(draws)


def top_logprob_groups(counts: Sequence[int], device: torch.device) -> tuple[TopLogprobRows, ...]:
    """Rows grouped by how many top log-probabilities they return (0: none)."""
    groups: dict[int, list[int]] = {}
    for i, count in enumerate(counts):
        if count > 0:
            groups.setdefault(count, []).append(i)
    return tuple(TopLogprobRows(count, to_device(index, device)) for count, index in groups.items())
