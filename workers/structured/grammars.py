"""StructuredOutput -> xgrammar Grammar: the tokenizer-free half of compilation.

Building a Grammar parses and converts (a JSON schema to EBNF, a regex to EBNF) in a few
milliseconds and raises on what xgrammar does not support, so it doubles as validation: the
router calls it to answer a bad schema with a 400 before any replica sees the request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from workers.structured.spec import StructuredOutput

if TYPE_CHECKING:  # imported where used: the engine runs without xgrammar
    import xgrammar as xgr


def build_grammar(spec: StructuredOutput) -> xgr.Grammar:
    """The grammar of `spec`; ValueError (saying what is unsupported) if xgrammar refuses it.

    JSON has fixed separators and no free whitespace (as json.dumps writes it): a model is
    never stuck emitting blanks.
    """
    try:
        return _build(spec)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"{_what(spec)} is not supported: {_reason(e)}") from e


def _build(spec: StructuredOutput) -> xgr.Grammar:
    import xgrammar as xgr

    if spec.kind == "json":  # OpenAI's json_object: an object, whatever its keys
        return xgr.Grammar.from_json_schema(
            '{"type": "object"}', any_whitespace=False, strict_mode=False
        )
    if spec.kind == "json_schema":
        schema = _bounded_strings_as_patterns(json.loads(spec.value))
        return xgr.Grammar.from_json_schema(
            json.dumps(schema), any_whitespace=False, strict_mode=True
        )
    if spec.kind == "regex":
        return xgr.Grammar.from_regex(spec.value)
    if spec.kind == "choice":
        options = json.loads(spec.value)
        # JSON string literals are valid EBNF literals (same escapes).
        return xgr.Grammar.from_ebnf(
            "root ::= " + " | ".join(json.dumps(o, ensure_ascii=False) for o in options)
        )
    return xgr.Grammar.from_ebnf(spec.value)


def _bounded_strings_as_patterns(node: Any) -> Any:
    """The schema with each length-bounded plain string rewritten as a pattern of as many
    JSON-safe characters. xgrammar 0.2.9 turns minLength/maxLength into a character class
    that admits raw control characters, which JSON strings must escape (the output would
    not parse), and UTF-8-encoded surrogates, which are no characters at all; a pattern
    keeps the bounds and stays valid JSON."""
    if isinstance(node, list):
        return [_bounded_strings_as_patterns(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _bounded_strings_as_patterns(value) for key, value in node.items()}
    bounded = "minLength" in node or "maxLength" in node
    plain = not any(key in node for key in ("pattern", "format", "enum", "const"))
    if node.get("type") == "string" and bounded and plain:
        low, high = node.pop("minLength", 0), node.pop("maxLength", "")
        node["pattern"] = f'^[^\\x00-\\x1f"\\\\\\uD800-\\uDFFF]{{{low},{high}}}$'
    return node


def _what(spec: StructuredOutput) -> str:
    return {
        "json": "the JSON grammar",
        "json_schema": "the JSON schema",
        "regex": "the regular expression",
        "choice": "the choice list",
        "grammar": "the EBNF grammar",
    }[spec.kind]


def _reason(error: Exception) -> str:
    """xgrammar's message without its C++ source location ("[time] file.cc:94: ...")."""
    text = str(error).strip()
    head, sep, tail = text.partition(".cc:")
    if sep and head.startswith("["):
        text = tail.split(":", 1)[-1].strip()
    return text.splitlines()[0] if text else type(error).__name__
