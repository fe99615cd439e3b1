"""A step's items cross the engine-core socket as columns (workers/delta_columns.py): any
list of (request id, TokenDelta or error) - every field, logprobs and prompt logprobs as
TokenLogprobs, finish reasons, error deltas, exceptions among the deltas, ids that are not
the deltas' own - comes back exactly: equal, of the same types, with the same state."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from workers import delta_columns
from workers.core_messages import Step
from workers.delta_streams import delivered
from workers.errors import RequestFailedError
from workers.protocol import FinishReason, ReplicaStats, TokenDelta, TokenLogprob
from workers.step_items import StepItems, step_items

REQUEST_IDS = st.sampled_from(["a", "b", "cmpl-0123", "é-ü", ""]) | st.text(max_size=12)
SMALL = st.integers(min_value=0, max_value=3)
COUNTS = st.integers(min_value=0, max_value=2**40)
FLOATS = st.floats(allow_nan=False, width=64)

logprob = st.builds(
    TokenLogprob,
    token_id=st.integers(min_value=0, max_value=2**31),
    logprob=st.none() | FLOATS,
    top=st.lists(st.tuples(st.integers(min_value=0, max_value=2**31), FLOATS), max_size=3).map(
        tuple
    ),
)
logprobs = st.none() | st.lists(logprob, max_size=3).map(tuple)


def deltas(request_id: st.SearchStrategy[str] = REQUEST_IDS) -> st.SearchStrategy[TokenDelta]:
    return st.builds(
        TokenDelta,
        request_id=request_id,
        index=SMALL,
        token_ids=st.lists(st.integers(min_value=0, max_value=2**31), max_size=4).map(tuple),
        logprobs=logprobs,
        finish_reason=st.none() | st.sampled_from(FinishReason),
        num_prompt_tokens=COUNTS,
        num_cached_tokens=SMALL | COUNTS,
        num_generated_tokens=COUNTS,
        num_drafted_tokens=SMALL,
        num_accepted_tokens=SMALL,
        error=st.none() | st.text(max_size=10),
        prompt_logprobs=logprobs,
    )


# Mostly a decode step: the deltas' own ids, few fields set; sometimes anything.
decode_like = st.builds(
    lambda i, token, generated: TokenDelta(f"r{i}", 0, (token,), None, None, 7, 0, generated),
    st.integers(0, 5),
    st.integers(0, 100),
    st.integers(1, 50),
)
any_delta = decode_like | deltas()
errors = st.builds(RequestFailedError, REQUEST_IDS, st.text(max_size=10)) | st.builds(
    ValueError, st.text(max_size=10)
)
item = st.one_of(
    any_delta.map(lambda d: (d.request_id, d)),
    st.tuples(REQUEST_IDS, any_delta),  # an id that is not the delta's own
    st.tuples(REQUEST_IDS, errors),
)
stats = st.none() | st.builds(
    ReplicaStats, COUNTS, COUNTS, SMALL, SMALL, FLOATS, st.lists(REQUEST_IDS).map(tuple)
)


def assert_same(got: Any, want: Any) -> None:
    """Equal, and of the same types down to the TokenLogprobs and the errors' state."""
    assert type(got) is type(want)
    if isinstance(want, BaseException):
        assert got.args == want.args and vars(got) == vars(want)
    elif isinstance(want, TokenDelta):
        assert got == want and vars(got) == vars(want)
        assert got.finish_reason is want.finish_reason  # the enum member itself
        for name in ("logprobs", "prompt_logprobs"):
            got_lp, want_lp = getattr(got, name), getattr(want, name)
            assert type(got_lp) is type(want_lp)
            for g, w in zip(got_lp or (), want_lp or (), strict=True):
                assert type(g) is TokenLogprob and vars(g) == vars(w)
    else:
        assert got == want


def assert_items(got: Any, want: list[Any]) -> None:
    got = list(got)
    assert len(got) == len(want)
    for (got_id, got_value), (want_id, want_value) in zip(got, want, strict=True):
        assert got_id == want_id
        assert_same(got_value, want_value)


@settings(max_examples=300, deadline=None)
@given(st.lists(item, max_size=12))
def test_any_items_round_trip_exactly(items: list[Any]) -> None:
    assert_items(delta_columns.decode(delta_columns.encode(items)), items)
    wire = pickle.loads(pickle.dumps(delta_columns.encode(items), protocol=5))
    assert_items(delta_columns.decode(wire), items)


@settings(max_examples=150, deadline=None)
@given(st.lists(item, max_size=12), stats)
def test_a_pickled_step_is_the_step(items: list[Any], stats: ReplicaStats | None) -> None:
    step = pickle.loads(pickle.dumps(Step(items, stats), protocol=pickle.HIGHEST_PROTOCOL))
    assert type(step) is Step and step.stats == stats
    assert_items(step.items, items)


@settings(max_examples=150, deadline=None)
@given(st.lists(deltas(REQUEST_IDS) | decode_like, max_size=12))
def test_an_engine_step_crosses_as_its_callers_items(step: list[TokenDelta]) -> None:
    """What the core sends for a step's deltas: each delta, a failed one as its error."""
    want = [(d.request_id, delivered(d)) for d in step]
    assert_items(step_items(step), want)
    wire = pickle.loads(pickle.dumps(Step(step_items(step), None), protocol=5))
    assert_items(wire.items, want)


def test_a_decode_step_sends_only_what_varies() -> None:
    step = [TokenDelta(f"r{i}", 0, (i,), None, None, 7, 0, 3) for i in range(64)]
    step[5] = TokenDelta("r5", 0, (5,), finish_reason=FinishReason.STOP, num_prompt_tokens=7)
    n, ids, errors, dense, same, sparse = delta_columns.encode(step_items(step))
    assert (n, ids, errors) == (64, None, None)
    assert sorted(dense) == ["num_generated_tokens", "request_id", "token_ids"]
    assert same == {"index": 0, "num_prompt_tokens": 7, "num_cached_tokens": 0} | {
        "num_drafted_tokens": 0,
        "num_accepted_tokens": 0,
    }
    assert sparse == {"finish_reason": {5: FinishReason.STOP}}
    old = len(pickle.dumps([(d.request_id, d) for d in step], protocol=5))
    assert len(pickle.dumps(delta_columns.encode(step_items(step)), protocol=5)) < old / 2


def test_step_items_are_a_sequence_of_pairs() -> None:
    a, b = TokenDelta("a", 0, (1,)), TokenDelta("b", 1, (2,))
    items = StepItems(["a", "x"], [a, b])
    assert items == [("a", a), ("x", b)] and [("a", a), ("x", b)] == items
    assert len(items) == 2 and items[1] == ("x", b) and items[:1] == [("a", a)]
    own = step_items([a, b])
    assert own.own_ids and own.request_ids == ["a", "b"] and list(own) == [("a", a), ("b", b)]
