"""lm-eval's request shapes and the rest of vLLM's completions API, through the official
client over an in-process engine: echo with prompt logprobs (max_tokens 0 and 1), token-id
and batched prompts, best_of, use_beam_search, and the chosen token in top_logprobs."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import openai
import pytest
import torch

from tests.factories import load_hf, make_engine
from tests.openai_errors import error_body
from tests.router.local_app import MODEL, engine_greedy, make_local_app, openai_client
from workers.async_engine import AsyncEngine

PROMPTS = ["def add(a, b):", "class Stack:", "import os"]


@pytest.fixture(scope="module")
def engine(served_model_dir: Path):
    engine = AsyncEngine(make_engine(served_model_dir))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def client(served_model_dir: Path, engine: AsyncEngine) -> openai.AsyncOpenAI:
    return openai_client(make_local_app(served_model_dir, engine)[0])


@pytest.fixture(scope="module")
def hf(served_model_dir: Path):
    return load_hf(served_model_dir)


def run(awaitable):
    async def main():
        return await awaitable

    return asyncio.run(main())


def hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), -1)


@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_scores_token_id_prompts_like_transformers(
    client, hf, prompt_tokenizer, max_tokens: int
) -> None:
    prompts = [list(prompt_tokenizer.encode_prompt(p)) for p in PROMPTS]
    out = run(
        client.completions.create(
            model=MODEL, prompt=prompts, max_tokens=max_tokens, temperature=0, logprobs=1,
            echo=True,
        )
    )  # fmt: skip
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert out.usage.prompt_tokens == sum(len(p) for p in prompts)
    assert out.usage.completion_tokens == max_tokens * len(prompts)
    for ids, choice in zip(prompts, out.choices, strict=True):
        lp = choice.logprobs
        assert len(lp.token_logprobs) == len(ids) + max_tokens
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        rows = hf_logprobs(hf, ids)
        for t in range(1, len(ids)):
            assert math.isclose(lp.token_logprobs[t], float(rows[t - 1, ids[t]]), abs_tol=1e-4)
            # the chosen token is always among top_logprobs, with its own logprob
            assert lp.top_logprobs[t][lp.tokens[t]] == lp.token_logprobs[t]
            greedy = int(rows[t - 1].argmax())
            assert (max(lp.top_logprobs[t], key=lp.top_logprobs[t].get) == lp.tokens[t]) == (
                greedy == ids[t]
            )
        assert choice.text.startswith(prompt_tokenizer.decode(ids))
        assert choice.finish_reason == "length"


def test_batched_text_prompts_give_n_choices_each(client, served_model_dir, prompt_tokenizer):
    out = run(
        client.completions.create(
            model=MODEL, prompt=PROMPTS, max_tokens=6, temperature=0, n=2,
            extra_body={"ignore_eos": True},
        )
    )  # fmt: skip
    assert [c.index for c in out.choices] == list(range(6))
    for i, prompt in enumerate(PROMPTS):
        ids = prompt_tokenizer.encode_prompt(prompt)
        expected = prompt_tokenizer.decode(engine_greedy(served_model_dir, ids, 6))
        assert [c.text for c in out.choices[2 * i : 2 * i + 2]] == [expected, expected]
    assert out.usage.completion_tokens == 6 * 6
    assert len({out.id}) == 1


def test_batched_prompts_stream_with_one_usage_chunk_and_done(client):
    async def main():
        stream = await client.completions.create(
            model=MODEL, prompt=PROMPTS, max_tokens=5, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )  # fmt: skip
        return [chunk async for chunk in stream]

    chunks = run(main())
    texts: dict[int, str] = {}
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert sorted(texts) == [0, 1, 2]
    assert chunks[-1].usage.completion_tokens == 15 and not chunks[-1].choices
    assert all(c.usage is None for c in chunks[:-1])


def test_best_of_returns_the_most_likely_samples(client):
    common = dict(model=MODEL, prompt=PROMPTS[0], max_tokens=6, temperature=1.0, seed=11)
    every = run(client.completions.create(n=4, logprobs=0, **common))
    best = run(client.completions.create(n=2, best_of=4, **common))
    ranked = sorted(every.choices, key=lambda c: sum(c.logprobs.token_logprobs), reverse=True)
    wanted = sorted(ranked[:2], key=lambda c: c.index)
    assert [c.text for c in best.choices] == [c.text for c in wanted]
    assert [c.index for c in best.choices] == [0, 1]
    assert best.choices[0].logprobs is None  # not asked for


def test_use_beam_search_is_beam_search_of_width_best_of(client):
    common = dict(model=MODEL, prompt=PROMPTS[1], max_tokens=6, n=2)
    beams = run(
        client.completions.create(**common, extra_body={"beam_width": 3, "ignore_eos": True})
    )
    named = run(
        client.completions.create(
            **common, best_of=3, extra_body={"use_beam_search": True, "ignore_eos": True}
        )
    )
    assert [c.text for c in named.choices] == [c.text for c in beams.choices]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(best_of=1, n=2), "best_of"),
        (dict(best_of=3, stream=True), "best_of"),
        (dict(suffix="x"), "suffix"),
    ],
)
def test_unsupported_combinations_are_400s_naming_the_field(client, kwargs, param) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        run(client.completions.create(model=MODEL, prompt="x", **kwargs))
    assert error_body(info.value)["param"] == param


def test_top_k_minus_one_means_off(client) -> None:
    off = run(
        client.completions.create(
            model=MODEL, prompt="x", max_tokens=4, seed=3, extra_body={"top_k": -1}
        )
    )
    zero = run(
        client.completions.create(
            model=MODEL, prompt="x", max_tokens=4, seed=3, extra_body={"top_k": 0}
        )
    )
    assert off.choices[0].text == zero.choices[0].text


@pytest.mark.parametrize("field", ["functions", "parallel_tool_calls", "made_up_option"])
def test_unknown_or_unsupported_fields_are_refused_by_name(client, field) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        run(client.completions.create(model=MODEL, prompt="x", extra_body={field: 1}))
    assert error_body(info.value)["param"] == field
    assert "not supported" in error_body(info.value)["message"]
