"""Tool calls into responses: a whole chat completion's message, or its SSE stream.

Streams follow OpenAI's shape: per call a first delta.tool_calls entry with index, id, type
and the function name (arguments ""), then argument fragments. A named choice streams its
arguments as they are generated (the output is the arguments). Auto streams content until
a `<tool_call>` tag begins, and required (a JSON array) is parsed when it is complete; their
calls are sent at the end, name first, then arguments. A choice that called tools finishes
with "tool_calls".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from router.errors import bad_request
from router.schema import ChatCompletionRequest
from router.sse import DONE, event
from router.structured import structured_output
from router.tool_parser import START, ParsedCall, held_back, new_call_id
from router.tools import ToolPlan
from workers.structured.spec import StructuredOutput


def chat_constraint(body: ChatCompletionRequest, plan: ToolPlan | None) -> StructuredOutput | None:
    """The output constraint of a chat request: its response format, or the grammar of a
    forced tool choice (not both)."""
    structured = structured_output(body)
    forced = plan.structured() if plan is not None else None
    if forced is None:
        return structured
    if structured is not None:
        raise bad_request(
            "a required or named tool_choice already constrains the output; remove "
            "response_format (or the guided_* / structured_outputs field)",
            "tool_choice",
        )
    return forced


def with_tool_calls(plan: ToolPlan | None, result: Any) -> Any:
    """The service's result (a body, or SSE events) with tool calls parsed out."""
    if plan is None:
        return result
    if isinstance(result, dict):
        return response_with_tool_calls(plan, result)
    return events_with_tool_calls(plan, result)


def response_with_tool_calls(plan: ToolPlan, body: dict[str, Any]) -> dict[str, Any]:
    for choice in body["choices"]:
        message = choice["message"]
        parsed = plan.parse(message.get("content") or "")
        if not parsed.calls:
            continue
        message["content"] = parsed.content
        message["tool_calls"] = [call.body() for call in parsed.calls]
        if choice["finish_reason"] == "stop":
            choice["finish_reason"] = "tool_calls"
    return body


async def events_with_tool_calls(plan: ToolPlan, events: AsyncIterator[str]) -> AsyncIterator[str]:
    streams: dict[int, _ChoiceStream] = {}
    async for raw in events:
        if raw == DONE or not raw.startswith("data: "):
            yield raw
            continue
        chunk = json.loads(raw[len("data: ") :])
        if "error" in chunk or not chunk.get("choices"):
            yield raw
            continue
        for choice in chunk["choices"]:
            stream = streams.setdefault(choice["index"], _ChoiceStream(plan))
            for delta, finish in stream.feed(choice):
                out = {**chunk, "choices": [{**choice, "delta": delta, "finish_reason": finish}]}
                yield event(out)


class _ChoiceStream:
    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.text = ""  # everything generated
        self.sent = 0  # content characters sent as content
        self.in_call = plan.mode != "auto"
        self.named_id: str | None = None

    def feed(self, choice: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
        """The (delta, finish_reason) pairs to send for one incoming chunk's choice."""
        delta = dict(choice.get("delta") or {})
        finish = choice.get("finish_reason")
        piece = delta.pop("content", None) or ""
        self.text += piece
        out: list[tuple[dict[str, Any], str | None]] = []
        if self.plan.mode == "named":
            out += self._named(delta, piece)
        elif not self.in_call:
            out += self._content(delta)
        elif delta:  # the role chunk
            out.append((delta, None))
        if finish is None:
            return out
        calls = self._final_calls()
        if self.plan.mode == "auto" and not calls:
            out += self._flush_content()
        for index, call in enumerate(calls):
            header = {**call.body(index), "function": {"name": call.name, "arguments": ""}}
            out.append(({"tool_calls": [header]}, None))
            args = {"index": index, "function": {"arguments": call.arguments}}
            out.append(({"tool_calls": [args]}, None))
        if calls or self.plan.mode == "named":
            finish = "tool_calls" if finish == "stop" else finish
        out.append(({}, finish))
        return out

    def _named(self, delta: dict[str, Any], piece: str) -> list[tuple[dict[str, Any], None]]:
        out: list[tuple[dict[str, Any], None]] = []
        if self.named_id is None and (piece or "role" not in delta):
            self.named_id = new_call_id()
            header = {
                "index": 0,
                "id": self.named_id,
                "type": "function",
                "function": {"name": self.plan.named, "arguments": ""},
            }
            out.append(({**delta, "tool_calls": [header]}, None))
            delta = {}
        elif delta:
            out.append((delta, None))
        if piece:
            out.append(({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
        return out

    def _content(self, delta: dict[str, Any]) -> list[tuple[dict[str, Any], None]]:
        """Auto: send content up to a possible tag start; from the tag on, hold it."""
        start = self.text.find(START, self.sent)
        if start >= 0:
            self.in_call = True
            end = start
        else:
            end = len(self.text) - held_back(self.text[self.sent :])
        piece, self.sent = self.text[self.sent : end], max(end, self.sent)
        if piece or delta:
            return [({**delta, **({"content": piece} if piece else {})}, None)]
        return []

    def _flush_content(self) -> list[tuple[dict[str, Any], None]]:
        piece, self.sent = self.text[self.sent :], len(self.text)
        return [({"content": piece}, None)] if piece else []

    def _final_calls(self) -> tuple[ParsedCall, ...]:
        if self.plan.mode == "named":
            return ()  # already streamed
        if self.plan.mode == "auto" and not self.in_call:
            return ()
        return self.plan.parse(self.text).calls
