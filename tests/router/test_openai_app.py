"""The OpenAI API through the official client, over an in-process engine (no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.factories import make_engine
from tests.openai_errors import error_body
from tests.router.local_app import MODEL, engine_greedy, make_local_app, openai_client
from workers.async_engine import AsyncEngine

PROMPT = "def add(a, b):"


@pytest.fixture(scope="module")
def engine(served_model_dir: Path):
    engine = AsyncEngine(make_engine(served_model_dir))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def app(served_model_dir: Path, engine: AsyncEngine):
    return make_local_app(served_model_dir, engine)


def run(awaitable):
    async def main():
        return await awaitable

    return asyncio.run(main())


def test_completion_equals_the_engines_greedy_output(app, served_model_dir, prompt_tokenizer):
    client = openai_client(app[0])
    out = run(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0))
    ids = prompt_tokenizer.encode_prompt(PROMPT)
    expected = engine_greedy(served_model_dir, ids, 12)
    assert out.choices[0].text == prompt_tokenizer.decode(expected)
    assert out.usage.prompt_tokens == len(ids)
    assert out.usage.completion_tokens == len(expected)
    assert out.choices[0].finish_reason == ("stop" if expected[-1] == 2 else "length")


def test_streamed_completion_equals_the_whole_one(app):
    client = openai_client(app[0])

    async def main() -> tuple[str, str, object]:
        whole = await client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=20,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        stream = await client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        return whole.choices[0].text, text, chunks

    whole, streamed, chunks = run(main())
    assert streamed == whole
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_chat_uses_the_chat_template(app, served_model_dir, prompt_tokenizer):
    from router.schema import ChatMessage

    client = openai_client(app[0])
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    out = run(
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    )
    ids = prompt_tokenizer.encode_chat([ChatMessage.model_validate(m) for m in messages])
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == prompt_tokenizer.decode(
        engine_greedy(served_model_dir, ids, 8)
    )
    assert out.usage.prompt_tokens == len(ids)


def test_streamed_chat_starts_with_the_role_and_reports_usage(app):
    client = openai_client(app[0])

    async def main():
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        return [c async for c in stream]

    chunks = run(main())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "length"


def test_n_choices_logprobs_and_stop_strings(app, prompt_tokenizer, served_model_dir):
    client = openai_client(app[0])
    ids = prompt_tokenizer.encode_prompt(PROMPT)
    greedy = prompt_tokenizer.decode(engine_greedy(served_model_dir, ids, 16, ignore_eos=True))
    stop = greedy[3:5]
    out = run(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=16,
            temperature=0,
            n=2,
            logprobs=2,
            stop=[stop],
            extra_body={"ignore_eos": True},
        )
    )
    assert [c.index for c in out.choices] == [0, 1]
    for choice in out.choices:
        assert choice.text == greedy[: greedy.index(stop)]
        assert choice.finish_reason == "stop"
        assert len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs) >= 1
        assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs)


def test_beam_search_and_sampling_extras_are_accepted(app):
    client = openai_client(app[0])
    out = run(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=5,
            n=2,
            extra_body={"beam_width": 3, "length_penalty": 1.0, "ignore_eos": True},
        )
    )
    assert len(out.choices) == 2
    sampled = run(
        client.completions.create(
            model=MODEL,
            prompt=[5, 6, 7],
            max_tokens=5,
            seed=3,
            extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2, "min_tokens": 5},
        )
    )
    assert sampled.usage.completion_tokens == 5


def test_models_lists_the_base_model(app):
    models = run(openai_client(app[0]).models.list())
    assert [m.id for m in models.data] == [MODEL]


def test_unknown_model_is_404(app):
    with pytest.raises(openai.NotFoundError) as e:
        run(openai_client(app[0]).completions.create(model="nope", prompt="x"))
    assert error_body(e.value)["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 100000}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"logprobs": 50}, "logprobs"),
        ({"extra_body": {"top_k": -2}}, "top_k"),
        ({"prompt": [1, 2, 999]}, None),  # a token id past the vocabulary (engine ValueError)
        ({"prompt": 12}, "prompt"),  # not a prompt at all
    ],
)
def test_invalid_parameters_are_400_naming_the_field(app, extra, param):
    kwargs = {"model": MODEL, "prompt": "x", "max_tokens": 4, **extra}
    with pytest.raises(openai.BadRequestError) as e:
        run(openai_client(app[0]).completions.create(**kwargs))
    assert error_body(e.value)["type"] == "invalid_request_error"
    if param is not None:
        assert error_body(e.value)["param"] == param


def test_every_route_but_health_needs_the_key(served_model_dir, engine):
    app, _, _ = make_local_app(served_model_dir, engine, api_keys=["sesame"])

    async def main():
        with pytest.raises(openai.AuthenticationError) as e:
            await openai_client(app, api_key="wrong").models.list()
        assert e.value.response.headers["www-authenticate"] == "Bearer"
        assert error_body(e.value)["type"] == "authentication_error"
        health = await openai_client(app)._client.get("http://tandem/health")
        assert health.status_code == 200
        return await openai_client(app, api_key="sesame").models.list()

    assert run(main()).data[0].id == MODEL


def test_metrics_are_recorded_with_model_and_adapter_labels(served_model_dir, engine):
    app, _, metrics = make_local_app(served_model_dir, engine)
    run(openai_client(app).completions.create(model=MODEL, prompt=PROMPT, max_tokens=3))
    assert metrics.total("tandem:generation_tokens_total") >= 1
    value, tags = metrics.values["tandem:time_to_first_token_seconds"][0]
    assert value > 0 and tags == {"model": MODEL, "adapter": ""}
