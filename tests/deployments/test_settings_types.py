"""What a type checker is told about the derived settings models matches what they are.

EngineSettings and SpecSettings are made by pydantic's create_model, whose fields a type
checker cannot see; EngineFields and SpecFields declare those read by name. Each declared
field must exist in the derived model with the same annotation.
"""

from __future__ import annotations

from typing import get_type_hints

import pytest
from pydantic import BaseModel

from deployments import engine_settings
from deployments.engine_settings import EngineFields, EngineSettings, SpecFields, SpecSettings


@pytest.mark.parametrize(
    ("declared", "model"), [(EngineFields, EngineSettings), (SpecFields, SpecSettings)]
)
def test_declared_fields_are_the_derived_models_own(declared: type, model: type[BaseModel]) -> None:
    hints = get_type_hints(declared, vars(engine_settings))
    assert hints, f"{declared.__name__} declares nothing"
    for name, hint in hints.items():
        assert name in model.model_fields, f"{model.__name__} has no field {name!r}"
        assert model.model_fields[name].annotation == hint, name
