"""Serve's deployment classes as a type checker should see them.

`@serve.deployment` turns a class into a `Deployment`, but type checkers do not apply class
decorators: to them the name is still the class. These casts say what the name holds at run
time; they do nothing.
"""

from __future__ import annotations

from typing import TypeVar, cast

from ray.serve import Deployment

T = TypeVar("T")


def as_deployment(cls: type) -> Deployment:
    """A class decorated with `@serve.deployment`: the Deployment it became."""
    return cast(Deployment, cls)


def user_class(cls: type[T]) -> type[T]:
    """The class a `@serve.deployment` wraps (its `func_or_class`), to build it without Serve."""
    return cast(type[T], as_deployment(cls).func_or_class)
