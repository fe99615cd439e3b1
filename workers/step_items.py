"""What one engine step hands its callers: (request id, delta or the request's error) pairs,
in order, held as two parallel lists (StepItems), so that neither the engine core nor the
replica makes a tuple per delta to build them or to walk them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter, is_, itemgetter
from typing import overload

from workers.delta_streams import delivered
from workers.protocol import FinishReason, TokenDelta

Item = tuple[str, TokenDelta | BaseException]
_request_id = attrgetter("request_id")
_finish_reason = attrgetter("finish_reason")
_first = itemgetter(0)
_second = itemgetter(1)


class StepItems(Sequence[Item]):
    """A Sequence of (request id, item) pairs over `request_ids` and `values`; `own_ids`:
    the values are all TokenDeltas and the ids their own (taken from them when asked)."""

    __slots__ = ("_request_ids", "own_ids", "values")

    def __init__(
        self, request_ids: Sequence[str] | None, values: Sequence[TokenDelta | BaseException]
    ) -> None:
        if request_ids is not None and len(request_ids) != len(values):
            raise ValueError(f"{len(request_ids)} request ids for {len(values)} items")
        self._request_ids = request_ids
        self.own_ids = request_ids is None
        self.values = values

    @property
    def request_ids(self) -> Sequence[str]:
        if self._request_ids is None:
            self._request_ids = list(map(_request_id, self.values))
        return self._request_ids

    @staticmethod
    def of(items: Sequence[Item]) -> StepItems:
        """`items` as StepItems (itself if it is one)."""
        if isinstance(items, StepItems):
            return items
        return StepItems(list(map(_first, items)), list(map(_second, items)))

    def __iter__(self) -> Iterator[Item]:
        return zip(self.request_ids, self.values, strict=False)  # equal lengths (__init__)

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return list(zip(self.request_ids[index], self.values[index], strict=True))
        return self.request_ids[index], self.values[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which do not hash

    def __repr__(self) -> str:
        return f"StepItems({list(self)!r})"


def step_items(deltas: Sequence[TokenDelta]) -> StepItems:
    """The items of an engine step's deltas: each request's delta, or the error its caller
    gets for it (`delivered`: a failed request's delta) - in C-level loops."""
    if any(map(is_, map(_finish_reason, deltas), repeat(FinishReason.ERROR))):
        return StepItems(list(map(_request_id, deltas)), list(map(delivered, deltas)))
    return StepItems(None, deltas)
