"""@record builds frozen dataclasses that behave as dataclasses' own."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.records import record


@record
class Point:
    x: int
    label: str = "p"
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PlainPoint:
    x: int
    label: str = "p"
    tags: tuple[str, ...] = ()


@given(st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3))
def test_a_record_is_what_a_frozen_dataclass_is(x: int, label: str, tags: list[str]) -> None:
    ours, theirs = Point(x, label=label, tags=tuple(tags)), PlainPoint(x, label, tuple(tags))
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
    assert repr(ours) == repr(theirs).replace("PlainPoint", "Point")
    assert ours == Point(x, label, tuple(tags)) and hash(ours) == hash(Point(x, label, tuple(tags)))
    assert pickle.loads(pickle.dumps(ours)) == ours
    assert dataclasses.replace(ours, x=x + 1) == Point(x + 1, label, tuple(tags))


def test_a_record_is_frozen_and_checks_its_arguments() -> None:
    point = Point(1)
    assert (point.x, point.label, point.tags) == (1, "p", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, nope=2)  # type: ignore[call-arg]


def test_post_init_runs_and_default_factories_are_refused() -> None:
    @record
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n < 0")

    with pytest.raises(ValueError):
        Checked(-1)
    with pytest.raises(TypeError, match="default_factory"):

        @record
        class Listy:
            items: list[int] = dataclasses.field(default_factory=list)
