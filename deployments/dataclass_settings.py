"""pydantic settings models derived from the engine's frozen dataclasses.

A field's annotation, default and description (`metadata["description"]`) come from the
dataclass, so an option added to the engine is settable from config.yaml without restating it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, create_model


def field_definitions(
    cls: type,
    exclude: Collection[str] = (),
    descriptions: Mapping[str, str] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`create_model` definitions of the dataclass `cls`'s fields, less `exclude`.
    `descriptions` replaces a field's own where the settings say more (e.g. a path's root);
    `annotations` replaces a field's type (a nested dataclass by its settings model)."""
    hints = {**get_type_hints(cls), **(annotations or {})}
    definitions: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        description = (descriptions or {}).get(f.name, f.metadata.get("description"))
        if f.default is not dataclasses.MISSING:
            info = Field(f.default, description=description)
        elif f.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=f.default_factory, description=description)
        else:
            info = Field(description=description)
        definitions[f.name] = (hints[f.name], info)
    return definitions


def merged(*definitions: dict[str, Any]) -> dict[str, Any]:
    """Definitions of several dataclasses side by side in one model; a name in two is refused."""
    result: dict[str, Any] = {}
    for part in definitions:
        clash = result.keys() & part.keys()
        if clash:
            raise TypeError(f"settings fields defined twice: {sorted(clash)}")
        result.update(part)
    return result


def values_of(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that name a field of the dataclass `cls`."""
    return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}


def derived_model(
    name: str, base: type[BaseModel], module: str, **definitions: Any
) -> type[BaseModel]:
    """A subclass of `base` (its config and methods) with these fields."""
    return create_model(name, __base__=base, __module__=module, **definitions)
