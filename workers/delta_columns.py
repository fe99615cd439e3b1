"""A step's items (request id, TokenDelta or the request's error) as columns, for the socket
between the engine core and its replica (workers/core_messages.py Step).

Pickled one by one, each TokenDelta is a class reference, a 12-key state dict and a rebuild
through its reducer: the bulk of a step message's cost at 256 deltas. Here each field crosses
as one tuple of values, or once where every delta has the same (`index` 0, no drafts), or,
for the fields that are mostly None (logprobs, finish reason, error, prompt logprobs), only
where set; TokenLogprobs cross as plain tuples. Both ends work in C-level loops (`map`,
`zip`): the core reads every field of every delta with one attrgetter; the parent copies the
step's common values into a dict per delta, sets the per-delta fields into those, and puts
each dict under a new TokenDelta (no dataclass __init__ per delta). Errors (BaseException
items) are pickled as themselves, at their place in the order.

benchmarks/core_link.py (CPU, 256 typical decode deltas, a real socket): the core's side of
a step (build, serialize, send) 288 -> 155 us, the parent's (read, deserialize, hand to the
streams) 560 -> 366 us, 23.0 -> 10.1 kB on the wire. decode(encode(items)) == items, exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import fields
from itertools import chain, compress, islice, repeat
from operator import attrgetter, is_not, setitem
from typing import Any

from workers.protocol import TokenDelta, TokenLogprob
from workers.step_items import Item, StepItems

# The wire form, plain types only (so pickle writes and reads it in C): the number of
# deltas; the items' request ids, or None where they are the deltas' own; {position in the
# items: error} or None; {field: one value per delta}; {field: the value of every delta};
# the SPARSE fields where not None: {field: {delta: value}}, and for logprobs {field: (the
# deltas, how many TokenLogprobs each, all of them as plain tuples)}.
Encoded = tuple[
    int,
    Sequence[str] | None,
    dict[int, BaseException] | None,
    dict[str, tuple[Any, ...]],
    dict[str, Any],
    dict[str, Any],
]

FIELDS = tuple(f.name for f in fields(TokenDelta))
SPARSE = frozenset({"logprobs", "finish_reason", "error", "prompt_logprobs"})
_LOGPROBS = frozenset({"logprobs", "prompt_logprobs"})
_all_fields = attrgetter(*FIELDS)
_TOKEN_LOGPROB = tuple(f.name for f in fields(TokenLogprob))
_plain_logprob = attrgetter(*_TOKEN_LOGPROB)
_new = object.__new__
_set_attribute = object.__setattr__  # a frozen dataclass's own __setattr__ refuses

PlainLogprob = tuple[int, float | None, tuple[tuple[int, float], ...]]


def encode(items: Sequence[Item]) -> Encoded:
    """The columns of `items` (see Encoded)."""
    step = StepItems.of(items)
    values = step.values
    errors: dict[int, BaseException] | None = None
    if not step.own_ids and not all(map(TokenDelta.__instancecheck__, values)):
        errors = {i: v for i, v in enumerate(values) if isinstance(v, BaseException)}
        values = [v for v in values if not isinstance(v, BaseException)]
    deltas: Sequence[TokenDelta] = values  # type: ignore[assignment]  # the errors are out
    n = len(deltas)
    dense: dict[str, tuple[Any, ...]] = {}
    same: dict[str, Any] = {}
    sparse: dict[str, Any] = {}
    if n:
        columns = zip(*map(_all_fields, deltas), strict=True)  # one tuple per field
        for name, column in zip(FIELDS, columns, strict=True):
            if name in SPARSE:
                if column.count(None) != n:
                    sparse[name] = _set_rows(name, column)
            elif column[0] == column[-1] and column.count(column[0]) == n:
                same[name] = column[0]
            else:
                dense[name] = column
    request_ids: Sequence[str] | None = None
    if errors is not None or (
        not step.own_ids and list(_own_request_ids(n, dense, same)) != list(step.request_ids)
    ):
        request_ids = step.request_ids
    return n, request_ids, errors, dense, same, sparse


def decode(encoded: Encoded) -> StepItems:
    """The items `encode` was given."""
    n, request_ids, errors, dense, same, sparse = encoded
    template = {name: same.get(name) for name in FIELDS}
    states = list(map(dict.copy, repeat(template, n)))
    for name, column in dense.items():
        _consume(map(setitem, states, repeat(name), column))
    for name, set_rows in sparse.items():
        if name in _LOGPROBS:
            rows, lengths, plain = set_rows
            set_values: Iterable[Any] = _grouped(_token_logprobs(plain), lengths)
        else:
            rows, set_values = set_rows, set_rows.values()
        _consume(map(setitem, map(states.__getitem__, rows), repeat(name), set_values))
    deltas = list(map(_new, repeat(TokenDelta, n)))
    _consume(map(_set_attribute, deltas, repeat("__dict__"), states))
    values: list[TokenDelta | BaseException] = deltas  # type: ignore[assignment]
    if errors:
        for position in sorted(errors):
            values.insert(position, errors[position])
    if request_ids is None:
        request_ids = _own_request_ids(n, dense, same)
    return StepItems(request_ids, values)


def _set_rows(name: str, column: tuple[Any, ...]) -> Any:
    """Where `column` is not None: {row: value}, or for logprobs (rows, lengths, plain)."""
    is_set = list(map(is_not, column, repeat(None)))
    rows = compress(range(len(column)), is_set)
    set_values = compress(column, is_set)
    if name not in _LOGPROBS:
        return dict(zip(rows, set_values, strict=True))
    logprobs = list(set_values)
    plain = list(map(_plain_logprob, chain.from_iterable(logprobs)))
    return list(rows), list(map(len, logprobs)), plain


def _own_request_ids(
    n: int, dense: dict[str, tuple[Any, ...]], same: dict[str, Any]
) -> Sequence[str]:
    """The deltas' own request ids, from their columns."""
    if "request_id" in dense:
        return dense["request_id"]
    return [same["request_id"]] * n if n else []


def _token_logprobs(plain: list[PlainLogprob]) -> list[TokenLogprob]:
    out = list(map(_new, repeat(TokenLogprob, len(plain))))
    states = map(dict, map(zip, repeat(_TOKEN_LOGPROB), plain))
    _consume(map(_set_attribute, out, repeat("__dict__"), states))
    return out


def _grouped(flat: list[Any], lengths: list[int]) -> Iterable[tuple[Any, ...]]:
    """`flat` cut into tuples of `lengths` (in C where all are as long)."""
    if lengths and lengths.count(lengths[0]) == len(lengths) and lengths[0]:
        return zip(*[iter(flat)] * lengths[0], strict=True)
    items = iter(flat)
    return [tuple(islice(items, length)) for length in lengths]


def _consume(iterator: Iterable[Any]) -> None:
    deque(iterator, maxlen=0)
