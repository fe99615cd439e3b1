"""PromptEncoder: long prompts tokenize off the event loop; hopeless ones are refused unread."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.errors import APIError
from router.prompt_encoder import PromptEncoder
from router.schema import ChatMessage
from router.tokenizer import PromptTokenizer
from tests.router.tiny_tokenizer import make_tiny_tokenizer

TEXT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PromptTokenizer:
    return PromptTokenizer.from_pretrained(str(make_tiny_tokenizer(tmp_path_factory.mktemp("t"))))


async def longest_stall(work: asyncio.Future) -> float:
    """The longest the loop went without running a 5 ms ticker while `work` ran."""
    longest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    await work
    return longest


def test_a_long_prompt_tokenizes_off_the_loop(tokenizer: PromptTokenizer):
    encoder = PromptEncoder(tokenizer, max_model_len=10**7)  # long enough to be tokenized
    prompt = TEXT * 20_000  # 640k characters: about a second of tokenizing

    async def main() -> tuple[float, tuple[int, ...]]:
        work = asyncio.ensure_future(encoder.encode_prompt(prompt))
        return await longest_stall(work), work.result()

    stall, ids = asyncio.run(main())
    assert ids == tokenizer.encode_prompt(prompt)
    assert stall < 0.25


def test_a_prompt_too_long_for_any_tokenization_is_refused_by_its_length(
    tokenizer: PromptTokenizer,
):
    encoder = PromptEncoder(tokenizer, max_model_len=256)
    fits = "x" * (256 * tokenizer.max_token_chars * 2)  # at the bound: tokenized, then judged
    assert len(asyncio.run(encoder.encode_prompt(fits))) > 0
    with pytest.raises(APIError) as refused:
        asyncio.run(encoder.encode_prompt(fits + "x"))
    assert refused.value.status == 400 and refused.value.param == "prompt"
    messages = [ChatMessage(role="user", content=fits), ChatMessage(role="user", content="x")]
    with pytest.raises(APIError) as chat:
        asyncio.run(encoder.encode_chat(messages))
    assert chat.value.param == "messages"


def test_no_token_is_longer_than_max_token_chars(tokenizer: PromptTokenizer):
    vocab = range(len(tokenizer.tokenizer))
    longest = max(len(tokenizer.decode([i], skip_special_tokens=False)) for i in vocab)
    assert longest <= tokenizer.max_token_chars
