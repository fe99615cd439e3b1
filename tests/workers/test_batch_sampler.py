"""The batched sampler gives every row exactly what the per-row reference functions
(workers/sampler.py) give that row alone: the same distribution bit for bit, the same token
from the same generator state, the same log-probabilities, whatever the rows beside it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.batch_sampler import apply_token_bitmask, sample, sampled_probs
from workers.logits_processing import TokenHistory, apply_processing
from workers.sampler import draw, processed_logits, sampling_probs, top_logprobs
from workers.sampling_batch import SamplingRow, prepare, sampling_row
from workers.sampling_params import SamplingParams

CPU = torch.device("cpu")


def generators(rows: list[SamplingParams]) -> list[torch.Generator | None]:
    """A fresh generator per seeded row (as the engine makes them), None for the others."""
    return [None if p.seed is None else torch.Generator().manual_seed(p.seed) for p in rows]


Histories = list[TokenHistory | None] | None


def processed(row: torch.Tensor, params: SamplingParams, history: TokenHistory) -> torch.Tensor:
    h = history
    return processed_logits(row, params, h.prompt_ids, h.output_ids, h.stop_ids, h.num_outputs)


def reference(
    logits: torch.Tensor,
    rows: list[SamplingParams],
    shared_seed: int,
    allowed: torch.Tensor | None = None,
    histories: Histories = None,
) -> tuple[list[int], list[torch.Tensor]]:
    """Each row alone through processed_logits (rows with a history), sampling_probs and
    draw, in row order, the unseeded ones drawing from one shared generator: tokens and the
    non-greedy rows' distributions."""
    shared = torch.Generator().manual_seed(shared_seed)
    tokens, dists = [], []
    for i, (params, gen) in enumerate(zip(rows, generators(rows), strict=True)):
        row = logits[i]
        history = histories[i] if histories is not None else None
        if history is not None:
            row = processed(row, params, history)
        if allowed is not None:
            row = row.masked_fill(~allowed[i], float("-inf"))
        probs = sampling_probs(row, params)
        if not params.greedy:
            dists.append(probs)
        tokens.append(draw(probs, params, gen or shared))
    return tokens, dists


def batched(
    logits: torch.Tensor,
    rows: list[SamplingParams],
    shared_seed: int,
    bitmask: torch.Tensor | None = None,
    histories: Histories = None,
):
    shared = torch.Generator().manual_seed(shared_seed)
    each = histories if histories is not None else [None] * len(rows)
    entries = [
        sampling_row(p, g, history=h) for p, g, h in zip(rows, generators(rows), each, strict=True)
    ]
    batch = prepare(entries, logits.shape[-1], CPU, shared)
    return batch, sample(logits, batch, None, bitmask)


def assert_rows_equal_reference(
    logits: torch.Tensor,
    rows: list[SamplingParams],
    shared_seed: int = 0,
    histories: Histories = None,
) -> None:
    tokens, dists = reference(logits, rows, shared_seed, histories=histories)
    batch, out = batched(logits, rows, shared_seed, histories=histories)
    assert out.tokens.tolist() == tokens
    work = logits
    if batch.processing is not None:
        assert histories is not None
        work = apply_processing(logits, batch.processing)
        for i, (params, h) in enumerate(zip(rows, histories, strict=True)):
            want = logits[i] if h is None else processed(logits[i], params, h)
            assert torch.equal(work[i], want)
    if batch.sampled is not None:
        probs = sampled_probs(work.index_select(0, batch.sampled), batch)
        for got, want in zip(probs, dists, strict=True):
            assert torch.equal(got, want)
    logprobs = logits.log_softmax(-1)
    assert out.logprobs.tolist() == [float(logprobs[i, t]) for i, t in enumerate(tokens)]
    for i, params in enumerate(rows):
        count = params.logprobs or 0
        expected = top_logprobs(logprobs[i], count)
        if not count:
            continue
        assert out.top_ids is not None and out.top_logprobs is not None
        ids = out.top_ids[i, : len(expected)].tolist()
        got = tuple(zip(ids, out.top_logprobs[i, : len(expected)].tolist(), strict=True))
        assert got == expected


MIXED = [
    SamplingParams(temperature=0),
    SamplingParams(temperature=0, logprobs=3),
    SamplingParams(temperature=0.8, top_k=5, seed=1, logprobs=2),
    SamplingParams(temperature=1.2, top_p=0.7, seed=2),
    SamplingParams(temperature=1.0, min_p=0.1, seed=3),
    SamplingParams(temperature=0.7, top_k=8, top_p=0.9, min_p=0.05, seed=4, logprobs=5),
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.5, top_k=3),
    SamplingParams(temperature=1.5, top_p=0.95, logprobs=1),
]


def test_a_mixed_batch_gives_each_row_what_it_gives_alone() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(MIXED), 64, generator=g) * 3
    assert_rows_equal_reference(logits, MIXED)
    # ... and what the batched sampler gives the row in a batch of its own (seeded rows:
    # the same seed gives the same token whatever the batch).
    _, together = batched(logits, MIXED, 0)
    for i, params in enumerate(MIXED):
        if params.seed is None and not params.greedy:
            continue  # unseeded rows share the generator: their draws depend on the order
        _, alone = batched(logits[i : i + 1], [params], 0)
        assert alone.tokens.tolist() == together.tokens[i : i + 1].tolist()
        assert alone.logprobs.tolist() == together.logprobs[i : i + 1].tolist()


PROCESSED = [
    SamplingParams(temperature=0, repetition_penalty=1.8, logit_bias=((7, 5.0),)),
    SamplingParams(temperature=0.9, frequency_penalty=1.5, presence_penalty=0.5, seed=8),
    SamplingParams(temperature=1.1, top_k=10, logit_bias=((3, -100.0), (9, 2.0)), seed=9),
    SamplingParams(temperature=1.0, min_tokens=3, seed=10, logprobs=4),
    SamplingParams(temperature=0.8, repetition_penalty=0.3, frequency_penalty=-1.0, seed=11),
    SamplingParams(temperature=1.0, logit_bias=((4, 1.5), (4, 2.5), (5, -0.5))),  # repeats
    SamplingParams(temperature=0, min_tokens=2, repetition_penalty=100.0, logprobs=2),
]
HISTORY = TokenHistory(prompt_ids=(5, 6, 7), output_ids=(7, 8, 8, 3), stop_ids=(2, 3))


def test_penalties_logit_bias_and_min_tokens_in_the_batch_equal_processed_logits() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(len(PROCESSED) + 1, 50, generator=g) * 2
    rows = [*PROCESSED, SamplingParams(temperature=0.5, repetition_penalty=2.0, seed=1)]
    histories: list[TokenHistory | None] = [HISTORY] * len(PROCESSED)
    histories[3] = TokenHistory(HISTORY.prompt_ids, (), HISTORY.stop_ids, 1)  # below min
    histories[6] = TokenHistory(HISTORY.prompt_ids, (8,), HISTORY.stop_ids, 2)  # at min
    histories.append(None)  # a row that comes processed: the batch leaves it as it is
    assert_rows_equal_reference(logits, rows, histories=histories)
    _, out = batched(logits, rows, 0, histories=histories)
    assert out.tokens[3] not in (2, 3)  # held back by min_tokens
    # The reported log-probabilities are the model's own, before processing.
    lp = logits.log_softmax(-1)
    assert out.logprobs.tolist() == [float(lp[i, t]) for i, t in enumerate(out.tokens)]


def test_rows_processed_by_the_runner_are_sampled_as_given() -> None:
    """Rows handed over already processed (without a history) are sampled as given:
    nothing is applied twice."""
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(len(PROCESSED), 50, generator=g) * 2
    h = TokenHistory(HISTORY.prompt_ids, HISTORY.output_ids, HISTORY.stop_ids, 1)
    rows = torch.stack([processed(raw[i], p, h) for i, p in enumerate(PROCESSED)])
    batch, out = batched(rows, PROCESSED, 0)
    assert batch.processing is None
    assert out.tokens.tolist() == reference(rows, PROCESSED, 0)[0]
    in_batch = batched(raw, PROCESSED, 0, histories=[h] * len(PROCESSED))[1]
    assert out.tokens.tolist() == in_batch.tokens.tolist()


def test_unseeded_rows_consume_the_shared_generator_as_consecutive_draws() -> None:
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(6, 1000, generator=g), -1)
    params = SamplingParams(temperature=1.0)
    shared = torch.Generator().manual_seed(5)
    one_by_one = [int(torch.multinomial(p, 1, generator=shared)) for p in probs]
    after = shared.get_state()
    shared = torch.Generator().manual_seed(5)
    batch = prepare([SamplingRow(params)] * 6, 1000, CPU, shared)
    assert sample(probs.log(), batch).tokens.tolist() == one_by_one
    assert torch.equal(shared.get_state(), after)


def test_all_greedy_rows_take_the_argmax() -> None:
    logits = torch.randn(5, 40)
    batch = prepare([SamplingRow(SamplingParams(temperature=0))] * 5, 40, CPU)
    assert batch.all_greedy and not batch.draws and not batch.top_logprobs
    out = sample(logits, batch)
    assert out.tokens.tolist() == logits.argmax(-1).tolist()
    assert out.top_ids is None


def bitmask_of(allowed: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] bool as xgrammar's int32 bitmask [rows, ceil(vocab / 32)]."""
    rows, vocab = allowed.shape
    words = -(-vocab // 32)
    padded = torch.zeros(rows, words * 32, dtype=torch.int64)
    padded[:, :vocab] = allowed.long()
    weights = (2 ** torch.arange(32, dtype=torch.int64))[None, None, :]
    packed = (padded.view(rows, words, 32) * weights).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def test_the_bitmask_hook_masks_each_row_as_the_grammar_path_does() -> None:
    g = torch.Generator().manual_seed(3)
    vocab = 70
    logits = torch.randn(len(MIXED), vocab, generator=g) * 3
    allowed = torch.rand(len(MIXED), vocab, generator=g) < 0.3
    allowed[:, 5] = True  # a grammar always allows something
    allowed[1] = True  # an unconstrained row: every bit set
    mask = bitmask_of(allowed)
    assert torch.equal(apply_token_bitmask(logits, mask).isfinite(), allowed)
    tokens, _ = reference(logits, MIXED, 0, allowed)
    _, out = batched(logits, MIXED, 0, mask)
    assert out.tokens.tolist() == tokens
    assert all(bool(allowed[i, t]) for i, t in enumerate(tokens))


temperatures = st.one_of(
    st.sampled_from([0.0, 1e-5, 1.1e-5, 0.05, 1.0, 1e3, 1e300, 1.7e308]),
    st.floats(min_value=0.01, max_value=3),
)
VOCAB_MAX = 64
token = st.integers(min_value=0, max_value=VOCAB_MAX - 1)
row_params = st.builds(
    SamplingParams,
    temperature=temperatures,
    top_k=st.sampled_from([-1, 0, 1, 2, 5, 31, 32, 33, 2**63 - 1]),
    top_p=st.one_of(
        st.sampled_from([1.0, 0.5, 1e-8, 5e-324]), st.floats(min_value=1e-6, max_value=1)
    ),
    min_p=st.one_of(st.sampled_from([0.0, 5e-324, 1.0]), st.floats(0, 1)),
    seed=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    logprobs=st.one_of(st.none(), st.integers(min_value=0, max_value=20)),
    repetition_penalty=st.one_of(
        st.just(1.0), st.sampled_from([0.01, 100.0]), st.floats(min_value=0.01, max_value=100)
    ),
    frequency_penalty=st.one_of(st.just(0.0), st.floats(min_value=-2, max_value=2)),
    presence_penalty=st.one_of(st.just(0.0), st.floats(min_value=-2, max_value=2)),
    min_tokens=st.integers(min_value=0, max_value=3),
    max_tokens=st.just(8),
    logit_bias=st.lists(st.tuples(token, st.floats(min_value=-100, max_value=100)), max_size=4).map(
        tuple
    ),
)
histories = st.builds(
    TokenHistory,
    prompt_ids=st.lists(token, max_size=6).map(tuple),
    output_ids=st.lists(token, max_size=6).map(tuple),
    stop_ids=st.lists(token, max_size=3).map(tuple),
    num_outputs=st.integers(min_value=0, max_value=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(row_params, st.one_of(st.none(), histories)), min_size=1, max_size=9),
    vocab=st.integers(min_value=2, max_value=VOCAB_MAX),
    data_seed=st.integers(min_value=0, max_value=2**31),
    ties=st.booleans(),
    shared_seed=st.integers(min_value=0, max_value=2**31),
)
def test_any_mix_of_rows_equals_each_row_alone(
    rows: list[tuple[SamplingParams, TokenHistory | None]],
    vocab: int,
    data_seed: int,
    ties: bool,
    shared_seed: int,
) -> None:
    g = torch.Generator().manual_seed(data_seed)
    logits = torch.randn(len(rows), VOCAB_MAX, generator=g)[:, :vocab].contiguous() * 4
    if ties:  # many equal logits: top-k/top-p boundaries and argmax ties
        logits = logits.round()
    params = [p for p, _ in rows]
    # Token ids beyond this vocabulary are refused by the engine: keep those below it.
    each = [None if h is None else _within(h, vocab) for _, h in rows]
    params = [_bias_within(p, vocab) for p in params]
    assert_rows_equal_reference(logits, params, shared_seed, histories=each)


def _within(h: TokenHistory, vocab: int) -> TokenHistory:
    def keep(ids: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(t for t in ids if t < vocab)

    return TokenHistory(keep(h.prompt_ids), keep(h.output_ids), keep(h.stop_ids), h.num_outputs)


def _bias_within(p: SamplingParams, vocab: int) -> SamplingParams:
    return dataclasses.replace(p, logit_bias=tuple((t, b) for t, b in p.logit_bias if t < vocab))


@pytest.mark.parametrize("vocab", [7, 32000, 151936])
def test_large_vocabularies_draw_as_multinomial(vocab: int) -> None:
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(len(MIXED), vocab, generator=g) * 2
    assert_rows_equal_reference(logits, MIXED, shared_seed=vocab)


def test_many_rows_are_filtered_a_chunk_at_a_time_as_each_row_alone() -> None:
    """On the host, sampled rows are filtered in chunks: filters whose rows fill a chunk,
    leave it, or cover part of it give each row what it gets alone."""
    g = torch.Generator().manual_seed(4)
    blocks = [
        [SamplingParams(temperature=0.9, top_k=5, seed=i) for i in range(40)],
        [SamplingParams(temperature=1.1, top_p=0.8, seed=100 + i) for i in range(40)],
        [MIXED[i % len(MIXED)] for i in range(45)],
        [PROCESSED[i % len(PROCESSED)] for i in range(30)],
    ]
    rows = [p for block in blocks for p in block]
    histories: list[TokenHistory | None] = [HISTORY if p in PROCESSED else None for p in rows]
    logits = torch.randn(len(rows), 300, generator=g) * 3
    assert_rows_equal_reference(logits, rows, shared_seed=7, histories=histories)
