"""@record: a frozen dataclass that is cheap to build, for what the engine makes per sequence
per step (ScheduledSeq, TokenDelta).

dataclasses' frozen __init__ stores each field through object.__setattr__; with twenty
fields that is half the cost of building the object. A record's __init__ writes the fields
straight into the instance's __dict__ instead. Everything else is the dataclass's own:
equality, hashing, repr, pickling, `replace`, and FrozenInstanceError on assignment.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    built = dataclasses.dataclass(frozen=True)(cls)
    namespace: dict[str, Any] = {}
    params, lines = [], []
    for f in dataclasses.fields(built):  # type: ignore[arg-type]
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"@record field {f.name} has a default_factory")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        lines.append(f"    _record_dict[{f.name!r}] = {f.name}")
    if hasattr(built, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    _record_dict = self.__dict__\n"
    exec(source + "\n".join(lines) + "\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{built.__qualname__}.__init__"
    built.__init__ = init  # type: ignore[method-assign]
    return built
