"""A step's items (request id, TokenDelta or the request's error) as columns, for the socket
between the engine core and its replica (workers/core_messages.py Step).

Pickling the TokenDelta objects one by one cost about 0.75 us a delta to write and 0.85 us
to read (CPU, batch 256): each is a class, a 12-key state dict and a rebuild. Here a field's
values cross as one list, or once when every delta has the same value (`index` 0, no
drafts), or only where set for the fields that are mostly None (logprobs, finish reason,
error, prompt logprobs). The parent rebuilds the deltas in C-level loops (`map`): a dict
copied from the step's common values, the per-delta fields set into it, and the object
made around it - no dataclass __init__ per delta. Errors (BaseException items) are pickled
as themselves, at their place in the order. decode(encode(items)) == items, exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields
from itertools import compress, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any

from workers.protocol import TokenDelta, TokenLogprob

Item = tuple[str, TokenDelta | BaseException]
# The wire form: (number of deltas, the items' request ids or None when they are the deltas'
# own, {position: error} or None, {field: values}, {field: the value of all}, {field: {row:
# value}}), in plain types only, so pickle writes it in C.
Encoded = tuple[
    int,
    list[str] | None,
    dict[int, BaseException] | None,
    dict[str, list[Any]],
    dict[str, Any],
    dict[str, dict[int, Any]],
]

FIELDS = tuple(f.name for f in fields(TokenDelta))
# Mostly None: sent only for the deltas that have them.
SPARSE = ("logprobs", "finish_reason", "error", "prompt_logprobs")
_DENSE = tuple(name for name in FIELDS if name not in SPARSE)
_LOGPROBS = ("logprobs", "prompt_logprobs")
_dense_values = itemgetter(*_DENSE)
_sparse_values = itemgetter(*SPARSE)
_TOKEN_LOGPROB = tuple(f.name for f in fields(TokenLogprob))
_plain_logprob = attrgetter(*_TOKEN_LOGPROB)
_first = itemgetter(0)
_second = itemgetter(1)
_new = object.__new__
_set = object.__setattr__


def encode(items: list[Item]) -> Encoded:
    """The columns of `items` (see Encoded)."""
    values = list(map(_second, items))
    errors: dict[int, BaseException] | None = None
    if not all(map(TokenDelta.__instancecheck__, values)):
        errors = {i: v for i, v in enumerate(values) if isinstance(v, BaseException)}
        values = [v for v in values if not isinstance(v, BaseException)]
    deltas: list[TokenDelta] = values  # the errors taken out
    n = len(deltas)
    rids: list[str] | None = list(map(_first, items))
    dense: dict[str, list[Any]] = {}
    same: dict[str, Any] = {}
    sparse: dict[str, dict[int, Any]] = {}
    if n:
        states = list(map(vars, deltas))  # a dataclass's fields are its instance dict
        for name, column in zip(_DENSE, _transposed(map(_dense_values, states)), strict=True):
            if column.count(column[0]) == n:
                same[name] = column[0]
            else:
                dense[name] = list(column)
        for name, column in zip(SPARSE, _transposed(map(_sparse_values, states)), strict=True):
            if column.count(None) != n:
                rows = list(compress(range(n), map(is_not, column, repeat(None))))
                set_values: Any = map(column.__getitem__, rows)
                if name in _LOGPROBS:
                    set_values = map(_plain_logprobs, set_values)
                sparse[name] = dict(zip(rows, set_values, strict=True))
        if errors is None and rids == _request_ids(n, dense, same):
            rids = None
    return n, rids, errors, dense, same, sparse


def decode(encoded: Encoded) -> list[Item]:
    """The items `encode` was given."""
    n, rids, errors, dense, same, sparse = encoded
    template = {name: same.get(name) for name in FIELDS}
    states = list(map(dict.copy, repeat(template, n)))
    for name, column in dense.items():
        _consume(map(dict.__setitem__, states, repeat(name), column))
    for name, by_row in sparse.items():
        set_values: Any = by_row.values()
        if name in _LOGPROBS:
            set_values = map(_token_logprobs, set_values)
        rows = map(states.__getitem__, by_row)
        _consume(map(dict.__setitem__, rows, repeat(name), set_values))
    deltas = list(map(_new, repeat(TokenDelta, n)))
    _consume(map(_set, deltas, repeat("__dict__"), states))  # frozen: past its __setattr__
    values: list[TokenDelta | BaseException] = deltas  # type: ignore[assignment]
    if errors:
        values = list(values)
        for position in sorted(errors):
            values.insert(position, errors[position])
    if rids is None:
        rids = _request_ids(n, dense, same)
    return list(zip(rids, values, strict=True))


def _transposed(rows: Any) -> Any:
    """Rows of fields as one tuple per field."""
    return zip(*rows, strict=True)


def _request_ids(n: int, dense: dict[str, list[Any]], same: dict[str, Any]) -> list[str]:
    """The deltas' own request ids, from their columns."""
    if "request_id" in dense:
        return dense["request_id"]
    return [same["request_id"]] * n if n else []


PlainLogprob = tuple[int, float | None, tuple[tuple[int, float], ...]]


def _plain_logprobs(logprobs: tuple[TokenLogprob, ...]) -> tuple[PlainLogprob, ...]:
    return tuple(map(_plain_logprob, logprobs))


def _token_logprobs(plain: tuple[PlainLogprob, ...]) -> tuple[TokenLogprob, ...]:
    out = tuple(map(_new, repeat(TokenLogprob, len(plain))))
    states = map(dict, map(zip, repeat(_TOKEN_LOGPROB), plain))
    _consume(map(_set, out, repeat("__dict__"), states))
    return out


def _consume(iterator: Any) -> None:
    deque(iterator, maxlen=0)
