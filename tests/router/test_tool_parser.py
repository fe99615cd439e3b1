"""Tool calls parsed out of model text, whole and streamed (auto: the model's own format)."""

from __future__ import annotations

import asyncio
import json

from router.sse import DONE, event
from router.tool_output import events_with_tool_calls, response_with_tool_calls
from router.tool_parser import held_back, parse_hermes, parse_required
from router.tools import ToolPlan

TOOLS = (
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}},
)
AUTO = ToolPlan("auto", TOOLS)
TEXT = (
    'Let me compute. <tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    '<tool_call>{"name": "mul", "arguments": {"a": 3}}</tool_call>'
)


def test_hermes_calls_are_parsed_and_the_rest_is_content() -> None:
    parsed = parse_hermes(TEXT, {"add", "mul"})
    assert parsed.content == "Let me compute."
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [
        ("add", {"a": 1, "b": 2}),
        ("mul", {"a": 3}),
    ]
    assert len({c.id for c in parsed.calls}) == 2
    unknown = parse_hermes('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', {"add"})
    assert unknown.calls == () and (unknown.content or "").startswith("<tool_call>")
    broken = parse_hermes('<tool_call>{"name": "add", </tool_call> hi', {"add"})
    assert broken.calls == ()


def test_required_output_is_an_array_of_calls() -> None:
    parsed = parse_required('[{"name": "mul", "parameters": {"a": 2}}]', {"add", "mul"})
    assert [(c.name, c.arguments) for c in parsed.calls] == [("mul", '{"a": 2}')]
    assert parse_required("[1", {"add"}).calls == ()


def test_a_possible_tag_start_is_held_back() -> None:
    assert held_back("abc <tool") == len("<tool")
    assert held_back("abc <") == 1
    assert held_back("abc") == 0


def test_whole_response_gets_tool_calls_and_finish_reason() -> None:
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ]
    }
    choice = response_with_tool_calls(AUTO, body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me compute."
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["add", "mul"]


def _stream(pieces: list[str]) -> list[dict]:
    async def events():
        yield event(
            {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        )
        for i, piece in enumerate(pieces):
            finish = "stop" if i == len(pieces) - 1 else None
            yield event(
                {
                    "id": "x",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}],
                }
            )
        yield DONE

    async def collect():
        return [e async for e in events_with_tool_calls(AUTO, events())]

    out = asyncio.run(collect())
    assert out[-1] == DONE
    return [json.loads(e[len("data: ") :]) for e in out[:-1]]


def test_streamed_auto_calls_come_as_openai_streams_them() -> None:
    pieces = [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]  # the tag split across deltas
    chunks = _stream(pieces)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    content = "".join(d.get("content", "") for d in deltas)
    assert content.strip() == "Let me compute."
    calls = [p for d in deltas for p in d.get("tool_calls", [])]
    headers = [p for p in calls if "id" in p]
    assert [(h["index"], h["function"]["name"], h["function"]["arguments"]) for h in headers] == [
        (0, "add", ""),
        (1, "mul", ""),
    ]
    args = {p["index"]: p["function"]["arguments"] for p in calls if "id" not in p}
    assert json.loads(args[0]) == {"a": 1, "b": 2} and json.loads(args[1]) == {"a": 3}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_streamed_text_without_calls_is_all_content() -> None:
    text = "no calls here, just < and <tool but never a tag"
    chunks = _stream([text[i : i + 4] for i in range(0, len(text), 4)])
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
