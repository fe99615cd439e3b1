"""logit_bias, structured outputs and tools through the official openai client, over an
in-process engine with a tiny random model."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
from transformers import AutoTokenizer

from tests.factories import make_engine
from tests.openai_errors import error_body
from tests.router.local_app import MODEL, make_local_app, openai_client
from workers.async_engine import AsyncEngine

# A Hermes-style template: tools in a system turn, calls as <tool_call>{json}</tool_call>.
TOOLS_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<|system|>\n{% for t in tools %}{{ t.function.name }} "
    "{% endfor %}\n{% endif %}{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}"
    "</tool_call>{% endfor %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
WEATHER: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "pattern": "^[a-z]{1,6}$"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
        },
    },
}
TIME: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["utc", "cet"]}},
            "required": ["zone"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 50},
        "word": {"enum": ["red", "blue"]},
    },
    "required": ["ok", "n", "word"],
}


def matches_schema(text: str) -> bool:
    """True when `text` is JSON valid against SCHEMA (jsonschema raises otherwise)."""
    jsonschema.validate(json.loads(text), SCHEMA)
    return True


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def tools_model_dir(served_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served model with a chat template that renders tools."""
    import shutil

    path = tmp_path_factory.mktemp("tools") / "tiny-tools"
    shutil.copytree(served_model_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.chat_template = TOOLS_TEMPLATE
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def engine(tools_model_dir: Path):
    engine = AsyncEngine(make_engine(tools_model_dir))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def app(tools_model_dir: Path, engine: AsyncEngine):
    return make_local_app(tools_model_dir, engine)[0]


@pytest.fixture(scope="module")
def plain_app(served_model_dir: Path):
    """The bundled tiny template, which never reads `tools`."""
    engine = AsyncEngine(make_engine(served_model_dir))
    yield make_local_app(served_model_dir, engine)[0]
    engine.shutdown()


def run(awaitable):
    async def main():
        return await awaitable

    return asyncio.run(main())


def chat(app, **kwargs):
    client = openai_client(app)
    return run(client.chat.completions.create(model=MODEL, messages=USER, **kwargs))


def test_logit_bias_forces_a_token_and_bad_keys_are_400(app, tools_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tools_model_dir))
    token = tokenizer.convert_tokens_to_ids("fox") if "fox" in tokenizer.get_vocab() else 40
    assert isinstance(token, int)
    client = openai_client(app)
    out = run(
        client.completions.create(
            model=MODEL, prompt="hello", max_tokens=5, temperature=1.0, logit_bias={str(token): 100}
        )
    )
    assert out.choices[0].text == tokenizer.decode([token] * 5)
    for bias in ({"abc": 1}, {"300": 1}, {"5": 101}):
        with pytest.raises(openai.BadRequestError) as e:
            run(client.completions.create(model=MODEL, prompt="hi", logit_bias=bias))
        assert error_body(e.value)["param"] == "logit_bias"


def test_response_format_json_schema_and_json_object(app) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA, "strict": True}}
    out = chat(app, max_tokens=60, temperature=0.7, seed=1, n=3, response_format=fmt)
    for choice in out.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    out = chat(app, max_tokens=60, temperature=0, response_format={"type": "json_object"})
    choice = out.choices[0]
    assert choice.message.content.startswith("{")
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({"guided_regex": "[a-f]{3}-[0-9]{2}"}, lambda t: re.fullmatch("[a-f]{3}-[0-9]{2}", t)),
        ({"guided_choice": ["left", "right"]}, lambda t: t in ("left", "right")),
        ({"structured_outputs": {"choice": ["up", "down"]}}, lambda t: t in ("up", "down")),
        ({"guided_json": SCHEMA}, matches_schema),
        ({"guided_grammar": 'root ::= "x" [0-9] "y"'}, lambda t: re.fullmatch("x[0-9]y", t)),
    ],
)
def test_vllm_constraints_on_completions(app, extra, check) -> None:
    client = openai_client(app)
    out = run(
        client.completions.create(
            model=MODEL, prompt="hi", max_tokens=60, temperature=1.0, n=2, extra_body=extra
        )
    )
    for choice in out.choices:
        assert choice.finish_reason == "stop"
        assert check(choice.text), choice.text


@pytest.mark.parametrize(
    ("kwargs", "param", "says"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {"type": "string", "pattern": "(?<=a)b"},
                    },
                }
            },
            "response_format",
            "Lookbehind",
        ),
        ({"extra_body": {"guided_regex": "a("}}, "guided_regex", "parenthesis"),
        (
            {"response_format": {"type": "json_object"}, "extra_body": {"guided_regex": "a"}},
            "guided_regex",
            "several",
        ),
        ({"extra_body": {"guided_grammar": "root ::= "}}, "guided_grammar", "EBNF"),
        (
            {"response_format": {"type": "json_object"}, "extra_body": {"ignore_eos": True}},
            "ignore_eos",
            "ignore_eos",
        ),
    ],
)
def test_bad_constraints_are_400_naming_the_field(app, kwargs, param, says) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        chat(app, max_tokens=5, **kwargs)
    assert error_body(e.value)["param"] == param
    assert says in error_body(e.value)["message"]


def test_tools_need_a_template_that_renders_them(plain_app, app) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        chat(plain_app, max_tokens=5, tools=[WEATHER])
    assert error_body(e.value)["param"] == "tools"
    assert "chat template does not support tools" in error_body(e.value)["message"]
    assert chat(plain_app, max_tokens=3, tools=[WEATHER], tool_choice="none").choices
    with pytest.raises(openai.BadRequestError) as e:
        chat(
            app,
            max_tokens=5,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert error_body(e.value)["param"] == "tool_choice"


def _arguments_valid(call, tools=(WEATHER, TIME)) -> None:
    schema = next(
        t["function"]["parameters"] for t in tools if t["function"]["name"] == call.function.name
    )
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_required_and_named_tool_choice_are_enforced(app) -> None:
    out = chat(
        app,
        max_tokens=120,
        temperature=0.8,
        seed=2,
        n=2,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    for choice in out.choices:
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls and choice.message.content is None
        for call in choice.message.tool_calls:
            assert call.type == "function" and call.id.startswith("call_")
            _arguments_valid(call)
    named = {"type": "function", "function": {"name": "get_time"}}
    out = chat(app, max_tokens=60, temperature=1.0, tools=[WEATHER, TIME], tool_choice=named)
    (call,) = out.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    _arguments_valid(call)
    assert out.choices[0].finish_reason == "tool_calls"


def test_auto_tool_choice_response_shape_and_tool_messages(app) -> None:
    history: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "weather in oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "oslo", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    client = openai_client(app)
    out = run(
        client.chat.completions.create(
            model=MODEL, messages=history, max_tokens=8, temperature=0, tools=[WEATHER]
        )
    )
    choice = out.choices[0]
    # A random model does not write <tool_call> tags: its text is the content.
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 50  # the tools and the earlier call were rendered


def _streamed_calls(app, **kwargs):
    client = openai_client(app)

    async def main():
        stream = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, **kwargs
        )
        assert isinstance(stream, openai.AsyncStream)
        return [c async for c in stream]

    chunks = run(main())
    calls: dict[int, dict] = {}
    first_deltas = []
    for chunk in chunks:
        for part in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(part.index, {"id": None, "name": None, "arguments": ""})
            if part.id:
                first_deltas.append(part)
                entry["id"], entry["name"] = part.id, part.function.name
                assert part.function.arguments == ""
            entry["arguments"] += part.function.arguments or ""
    return calls, chunks, first_deltas


@pytest.mark.parametrize("choice", ["required", "named"])
def test_streamed_tool_calls_equal_the_whole_response(app, choice) -> None:
    tool_choice = (
        {"type": "function", "function": {"name": "get_weather"}}
        if choice == "named"
        else "required"
    )
    kwargs = dict(
        max_tokens=120,
        temperature=0,
        tools=[WEATHER, TIME],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
    )
    whole = chat(app, **kwargs).choices[0].message.tool_calls
    calls, chunks, firsts = _streamed_calls(app, **kwargs)
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        (c.function.name, c.function.arguments) for c in whole
    ]
    assert len(firsts) == len(whole) and all(f.type == "function" for f in firsts)
    if choice == "named":  # arguments arrive as they are generated, in several fragments
        fragments = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        assert len(fragments) > 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
