"""Turning a replica's delta stream into responses: coalescing, errors after the stream
began, aborts, and closing the stream when every choice is done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from router.generation import Generation
from router.metrics import NullMetrics, RecordingMetrics
from router.prepared import Endpoint, OutputOptions, PreparedRequest
from workers.protocol import FinishReason, GenerateRequest, TokenDelta, TokenLogprob
from workers.sampling_params import SamplingParams


def prepared(
    stream: bool = True, n: int = 1, stop: tuple[str, ...] = (), logprobs: int | None = None
) -> PreparedRequest:
    sampling = SamplingParams(max_tokens=50, n=n, logprobs=logprobs)
    request = GenerateRequest("cmpl-1", (1, 5), sampling)
    return PreparedRequest(
        Endpoint.COMPLETIONS, "m", request, OutputOptions(stop=stop, stream=stream)
    )


def delta(ids: list[int], finish: FinishReason | None = None, index: int = 0) -> TokenDelta:
    return TokenDelta("cmpl-1", index, tuple(ids), finish_reason=finish)


def ascii_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"]


def events(generation: Generation) -> list[str]:
    async def main() -> list[str]:
        return [e async for e in generation.events()]

    return asyncio.run(main())


def payloads(raw: list[str]) -> list[str]:
    return [e.removeprefix("data: ").strip() for e in raw]


def test_an_error_after_streaming_began_is_an_error_event_not_a_clean_finish(prompt_tokenizer):
    ids = ascii_ids(prompt_tokenizer, "ab")

    async def failing() -> AsyncIterator[list[TokenDelta]]:
        yield [delta(ids)]
        raise RuntimeError("replica lost")

    metrics = RecordingMetrics()
    request = prepared()
    out = payloads(events(Generation(request, prompt_tokenizer, failing(), metrics, "m")))
    assert json.loads(out[0])["choices"][0]["text"]
    error = json.loads(out[-1])["error"]
    assert error["type"] == "internal_error"
    # the request id, under which the log has the traceback; never the exception's text
    assert request.response_id in error["message"] and "replica lost" not in error["message"]
    assert "[DONE]" not in out
    assert metrics.total("tandem:request_failure_total") == 1  # counted for the dashboard
    assert metrics.total("tandem:request_success_total") == 0


def test_an_unrequested_abort_is_reported_as_503(prompt_tokenizer):
    async def aborted() -> AsyncIterator[list[TokenDelta]]:
        yield [delta([104], FinishReason.ABORT)]

    out = payloads(events(Generation(prepared(), prompt_tokenizer, aborted(), NullMetrics(), "m")))
    assert json.loads(out[-1])["error"]["code"] == "aborted"


def test_deltas_that_piled_up_become_one_chunk(prompt_tokenizer):
    async def burst() -> AsyncIterator[list[TokenDelta]]:
        yield [delta([104]), delta([105]), delta([106], FinishReason.LENGTH)]

    out = payloads(events(Generation(prepared(), prompt_tokenizer, burst(), NullMetrics(), "m")))
    assert out[-1] == "[DONE]"
    (chunk,) = [json.loads(p) for p in out[:-1]]
    assert chunk["choices"][0]["text"] == prompt_tokenizer.decode([104, 105, 106])
    assert chunk["choices"][0]["finish_reason"] == "length"


def test_stop_strings_on_every_choice_close_the_stream_and_release_once(prompt_tokenizer):
    closed: list[bool] = []
    released: list[Generation] = []
    ids = ascii_ids(prompt_tokenizer, "xy")
    text = prompt_tokenizer.decode(ids)

    async def endless() -> AsyncIterator[list[TokenDelta]]:
        try:
            while True:
                yield [delta(ids, index=0), delta(ids, index=1)]
                await asyncio.sleep(0)
        finally:
            closed.append(True)

    generation = Generation(
        prepared(stream=False, n=2, stop=(text,)),
        prompt_tokenizer,
        endless(),
        NullMetrics(),
        "m",
        on_close=released.append,
    )
    body = asyncio.run(generation.response())
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "stop"]
    assert [c["text"] for c in body["choices"]] == ["", ""]
    assert closed == [True] and released == [generation]


def test_a_batch_is_detokenized_at_once_with_every_logprob(prompt_tokenizer):
    ids = ascii_ids(prompt_tokenizer, "abcd")

    def with_logprob(token: int, finish: FinishReason | None = None) -> TokenDelta:
        return TokenDelta("cmpl-1", 0, (token,), (TokenLogprob(token, -0.5),), finish)

    async def burst() -> AsyncIterator[list[TokenDelta]]:
        yield [with_logprob(t) for t in ids[:-1]] + [with_logprob(ids[-1], FinishReason.LENGTH)]

    request = prepared(stream=False, logprobs=0)
    generation = Generation(request, prompt_tokenizer, burst(), NullMetrics(), "m")
    (choice,) = asyncio.run(generation.response())["choices"]
    assert choice["text"] == prompt_tokenizer.decode(ids)
    assert choice["logprobs"]["tokens"] == [prompt_tokenizer.token_text(t) for t in ids]
    assert generation.usage.completion_tokens == len(ids)


def test_tokens_after_a_stop_string_in_the_same_batch_are_not_counted(prompt_tokenizer):
    stop, rest = ascii_ids(prompt_tokenizer, "x"), ascii_ids(prompt_tokenizer, "yz")

    async def burst() -> AsyncIterator[list[TokenDelta]]:
        yield [delta(stop), delta(rest), delta(rest, FinishReason.LENGTH)]

    text = prompt_tokenizer.decode(stop)
    generation = Generation(
        prepared(stream=False, stop=(text,)), prompt_tokenizer, burst(), NullMetrics(), "m"
    )
    (choice,) = asyncio.run(generation.response())["choices"]
    assert choice["finish_reason"] == "stop" and choice["text"] == ""
    assert generation.usage.completion_tokens == len(stop)
