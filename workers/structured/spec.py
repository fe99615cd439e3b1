"""StructuredOutput: the constraint a request's output must follow, as the engine receives it.

Plain data (no xgrammar objects): it travels inside SamplingParams from the router to a
replica (pickled by Ray), is hashable (the compiled-grammar cache key) and is compiled by
the engine, which holds the tokenizer's grammar compiler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

StructuredKind = Literal["json", "json_schema", "regex", "choice", "grammar"]
KINDS: tuple[str, ...] = ("json", "json_schema", "regex", "choice", "grammar")


@dataclass(frozen=True)
class StructuredOutput:
    """kind "json": any JSON object (OpenAI's json_object; value unused, "");
    "json_schema": value is the schema as JSON text; "regex": a regular expression the whole
    output matches; "choice": value is a JSON list of the allowed output strings; "grammar":
    an EBNF grammar (GBNF style, its start rule named `root`)."""

    kind: StructuredKind
    value: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"structured output kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.value, str):
            raise ValueError(f"structured output value must be a string, got {self.value!r}")
        if self.kind == "choice":
            choices = json.loads(self.value)
            if not choices or not all(isinstance(c, str) and c for c in choices):
                raise ValueError("guided_choice must be a non-empty list of non-empty strings")
        elif self.kind != "json" and not self.value:
            raise ValueError(f"structured output of kind {self.kind!r} needs a value")

    @classmethod
    def choice(cls, options: list[str]) -> StructuredOutput:
        return cls("choice", json.dumps(list(options), ensure_ascii=False))

    @classmethod
    def json_schema(cls, schema: dict | str) -> StructuredOutput:
        text = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True)
        return cls("json_schema", text)
