"""StructuredOutput -> xgrammar Grammar: the tokenizer-free half of compilation.

Building a Grammar parses and converts (a JSON schema to EBNF, a regex to EBNF) in a few
milliseconds and raises on what xgrammar does not support, so it doubles as validation: the
router calls it to answer a bad schema with a 400 before any replica sees the request.
"""

from __future__ import annotations

import json

import xgrammar as xgr

from workers.structured.spec import StructuredOutput


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
    if spec.kind == "json":
        return xgr.Grammar.builtin_json_grammar()
    if spec.kind == "json_schema":
        json.loads(spec.value)  # a clear message for text that is not JSON at all
        return xgr.Grammar.from_json_schema(spec.value, any_whitespace=False, strict_mode=True)
    if spec.kind == "regex":
        return xgr.Grammar.from_regex(spec.value)
    if spec.kind == "choice":
        options = json.loads(spec.value)
        # JSON string literals are valid EBNF literals (same escapes).
        return xgr.Grammar.from_ebnf(
            "root ::= " + " | ".join(json.dumps(o, ensure_ascii=False) for o in options)
        )
    return xgr.Grammar.from_ebnf(spec.value)


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
