"""Tool calls out of model text: the Hermes / Qwen format (`<tool_call>{"name": ...,
"arguments": {...}}</tool_call>`, what Qwen2.5's and Hermes' chat templates teach), and the
JSON that forced tool choices generate under a grammar."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

START = "<tool_call>"
END = "</tool_call>"
_CALL = re.compile(re.escape(START) + r"\s*(.*?)\s*" + re.escape(END), re.DOTALL)


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # a JSON object as text
    id: str = ""

    def body(self, index: int | None = None) -> dict:
        out = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return out if index is None else {"index": index, **out}


@dataclass(frozen=True)
class ParsedOutput:
    content: str | None
    calls: tuple[ParsedCall, ...]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_hermes(text: str, tool_names: set[str]) -> ParsedOutput:
    """Calls in `<tool_call>` tags whose JSON names a known tool; everything else (and a tag
    holding anything else) stays content."""
    calls: list[ParsedCall] = []
    kept: list[str] = []
    position = 0
    for match in _CALL.finditer(text):
        call = _call_from_json(match.group(1), tool_names, "arguments")
        if call is None:
            continue
        kept.append(text[position : match.start()])
        position = match.end()
        calls.append(call)
    kept.append(text[position:])
    content = "".join(kept).strip()
    return ParsedOutput(content or None, tuple(calls))


def parse_required(text: str, tool_names: set[str]) -> ParsedOutput:
    """tool_choice required: the grammar made the output a JSON array of
    {"name", "parameters"} objects."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return ParsedOutput(text or None, ())
    calls = [
        call
        for item in items
        if isinstance(items, list)
        for call in [_call_from_obj(item, tool_names, "parameters")]
        if call is not None
    ]
    return ParsedOutput(None if calls else text or None, tuple(calls))


def parse_named(text: str, name: str) -> ParsedOutput:
    """A named tool choice: the grammar made the whole output the arguments object."""
    return ParsedOutput(None, (ParsedCall(name, text, new_call_id()),))


def _call_from_json(raw: str, tool_names: set[str], key: str) -> ParsedCall | None:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return _call_from_obj(obj, tool_names, key)


def _call_from_obj(obj: object, tool_names: set[str], key: str) -> ParsedCall | None:
    if not isinstance(obj, dict) or obj.get("name") not in tool_names:
        return None
    arguments = obj.get(key, {})
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ParsedCall(str(obj["name"]), text, new_call_id())


def held_back(text: str) -> int:
    """How many trailing characters of streamed content might start a `<tool_call>` tag
    (they wait for the next delta before being sent as content)."""
    for size in range(min(len(START) - 1, len(text)), 0, -1):
        if START.startswith(text[-size:]):
            return size
    return 0
