"""The request's output constraint (response_format, structured_outputs, guided_*) as the
engine's StructuredOutput, checked at the door: a schema xgrammar cannot follow is a 400
naming the field, before any replica sees the request. Building the grammar here parses it
without the tokenizer (milliseconds); compiling against the vocabulary happens in a replica."""

from __future__ import annotations

import json
from typing import Any

from router.errors import bad_request
from router.structured_schema import StructuredFields
from workers.structured.grammars import build_grammar
from workers.structured.spec import StructuredOutput


def structured_output(body: StructuredFields) -> StructuredOutput | None:
    """The one constraint the request sets, or None; 400 when it sets several or a bad one."""
    found = [(param, spec) for param, spec in _candidates(body) if spec is not None]
    if len(found) > 1:
        names = ", ".join(param for param, _ in found)
        raise bad_request(f"set one output constraint, got several: {names}", found[1][0])
    if not found:
        return None
    param, spec = found[0]
    check_constraint(spec, param)
    return spec


def check_constraint(spec: StructuredOutput, param: str) -> None:
    try:
        build_grammar(spec)
    except ValueError as e:
        raise bad_request(f"{param}: {e}; change or remove it", param) from e


def _candidates(body: StructuredFields) -> list[tuple[str, StructuredOutput | None]]:
    out: list[tuple[str, StructuredOutput | None]] = [
        ("response_format", _response_format(body)),
        ("guided_json", _schema(body.guided_json, "guided_json")),
        ("guided_regex", _plain("regex", body.guided_regex, "guided_regex")),
        ("guided_choice", _choice(body.guided_choice, "guided_choice")),
        ("guided_grammar", _plain("grammar", body.guided_grammar, "guided_grammar")),
    ]
    so = body.structured_outputs
    if so is not None:
        set_fields = [
            spec
            for spec in (
                _schema(so.json_, "structured_outputs"),
                _plain("regex", so.regex, "structured_outputs"),
                _choice(so.choice, "structured_outputs"),
                _plain("grammar", so.grammar, "structured_outputs"),
                StructuredOutput("json") if so.json_object else None,
            )
            if spec is not None
        ]
        if len(set_fields) != 1:
            raise bad_request(
                "structured_outputs must set exactly one of json, regex, choice, grammar, "
                "json_object",
                "structured_outputs",
            )
        out.append(("structured_outputs", set_fields[0]))
    return out


def _response_format(body: StructuredFields) -> StructuredOutput | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return StructuredOutput("json")
    if fmt.json_schema is None:
        raise bad_request(
            "response_format of type json_schema needs a json_schema object with a schema",
            "response_format",
        )
    return _schema(fmt.json_schema.json_schema, "response_format")


def _schema(schema: dict[str, Any] | str | None, param: str) -> StructuredOutput | None:
    if schema is None:
        return None
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise bad_request(f"{param} is not valid JSON: {e}", param) from e
    if not isinstance(schema, dict):
        raise bad_request(f"{param} must be a JSON schema object", param)
    return StructuredOutput.json_schema(schema)


def _plain(kind: str, value: str | None, param: str) -> StructuredOutput | None:
    if value is None:
        return None
    if not value:
        raise bad_request(f"{param} must not be empty", param)
    return StructuredOutput(kind, value)  # type: ignore[arg-type]


def _choice(options: list[str] | None, param: str) -> StructuredOutput | None:
    if options is None:
        return None
    if not options or not all(options):
        raise bad_request(f"{param} must be a non-empty list of non-empty strings", param)
    return StructuredOutput.choice(options)
