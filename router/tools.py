"""ToolPlan: what a chat request's tools and tool_choice mean for this request.

none: the model sees no tools and its text is plain content. auto: the tools go through the
chat template and calls are parsed from the output (router/tool_parser.py). required and a
named function are enforced by a grammar: a JSON schema built from the tools' parameters
(required: an array of {"name", "parameters"} calls; named: that function's arguments).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.errors import bad_request
from router.schema import ChatCompletionRequest, ChatMessage
from router.tool_parser import ParsedOutput, parse_hermes, parse_named, parse_required
from router.tool_schema import NamedToolChoice
from workers.structured.spec import StructuredOutput


@dataclass(frozen=True)
class ToolPlan:
    mode: str  # "auto", "required" or "named"
    tools: tuple[dict[str, Any], ...]  # as the chat template takes them
    named: str | None = None
    parallel: bool = True  # parallel_tool_calls: false allows one call per answer

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}

    def structured(self) -> StructuredOutput | None:
        """The grammar that enforces the choice (None for auto)."""
        by_name = {t["function"]["name"]: t["function"] for t in self.tools}
        if self.mode == "named":
            assert self.named is not None
            return StructuredOutput.json_schema(_parameters(by_name[self.named]))
        if self.mode == "required":
            calls = [
                {
                    "type": "object",
                    "properties": {"name": {"const": name}, "parameters": _parameters(fn)},
                    "required": ["name", "parameters"],
                }
                for name, fn in by_name.items()
            ]
            array = {"type": "array", "minItems": 1, "items": {"anyOf": calls}}
            if not self.parallel:
                array["maxItems"] = 1
            return StructuredOutput.json_schema(array)
        return None

    def parse(self, text: str) -> ParsedOutput:
        if self.mode == "named":
            assert self.named is not None
            return parse_named(text, self.named)
        if self.mode == "required":
            return parse_required(text, self.names)
        return parse_hermes(text, self.names)


def tool_plan(body: ChatCompletionRequest, chat_template: str | None) -> ToolPlan | None:
    """None when the request uses no tools (none, or no tools given)."""
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none"):
            raise bad_request("tool_choice needs tools; send tools or remove it", "tool_choice")
        return None
    if choice == "none":
        return None
    if "tools" not in (chat_template or ""):
        raise bad_request(
            "this model's chat template does not support tools (it never reads `tools`); "
            "remove tools, or serve a model whose template renders them",
            "tools",
        )
    tools = tuple(t.model_dump(exclude_none=True) for t in body.tools)
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise bad_request("tool names must be unique", "tools")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise bad_request(
                f"tool_choice names {choice.function.name!r}, which is not among the tools",
                "tool_choice",
            )
        return ToolPlan("named", tools, choice.function.name)
    mode = "required" if choice == "required" else "auto"
    return ToolPlan(mode, tools, parallel=body.parallel_tool_calls is not False)


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation as chat templates take it: assistant tool calls with their arguments
    as objects (what Hugging Face templates expect), tool results with their call id."""
    out = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.function.name,
                        "arguments": _loads(c.function.arguments),
                    },
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        out.append(message)
    return out


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    return function.get("parameters") or {"type": "object", "properties": {}}


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
