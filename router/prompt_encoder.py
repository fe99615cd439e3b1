"""Prompts to token ids without stalling the event loop.

Tokenizing megabytes of text takes seconds, and the router's loop serves every stream and
the health check. So a prompt that cannot fit the context is refused by its length in
characters before any tokenizing (no token covers more than `max_token_chars` characters),
and a long one that might fit is tokenized on a small thread pool (the Rust tokenizer
releases the GIL while it works); short prompts stay inline, where a thread hop would cost
more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

from router.errors import bad_request
from router.schema import ChatMessage
from router.tokenizer import PromptTokenizer

T = TypeVar("T")

INLINE_CHARS = 4096  # prompts up to this long are tokenized on the loop (well under 1 ms)
# normalizers may merge characters (NFKC composes a letter and its accent), so the bound
# allows each token twice its longest form before calling a prompt too long unread
NORMALIZATION_SLACK = 2
TOKENIZER_THREADS = 2


class PromptEncoder:
    def __init__(
        self,
        tokenizer: PromptTokenizer,
        max_model_len: int,
        executor: Executor | None = None,
        inline_chars: int = INLINE_CHARS,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_chars = max_model_len * tokenizer.max_token_chars * NORMALIZATION_SLACK
        self.max_model_len = max_model_len
        self.inline_chars = inline_chars
        self._executor = executor or ThreadPoolExecutor(
            TOKENIZER_THREADS, thread_name_prefix="tokenize"
        )

    async def encode_prompt(
        self, prompt: str | list[int] | list[str] | list[list[int]]
    ) -> tuple[int, ...]:
        self._check_length(_prompt_chars(prompt), "prompt")
        return await self._run(_prompt_chars(prompt), self.tokenizer.encode_prompt, prompt)

    async def encode_prompts(
        self, prompt: str | list[int] | list[str] | list[list[int]]
    ) -> list[tuple[int, ...]]:
        """Every prompt of a request (a batch is a list of texts or of id lists); each
        text is held to the context on its own."""
        texts = prompt if isinstance(prompt, list) else [prompt]
        for text in texts:
            if isinstance(text, str):
                self._check_length(len(text), "prompt")
        return await self._run(_prompt_chars(prompt), self.tokenizer.encode_prompts, prompt)

    async def encode_chat(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True
    ) -> tuple[int, ...]:
        chars = sum(len(m.text()) for m in messages)
        self._check_length(chars, "messages")
        return await self._run(chars, self.tokenizer.encode_chat, messages, add_generation_prompt)

    def _check_length(self, chars: int, param: str) -> None:
        if chars > self.max_chars:
            raise bad_request(
                f"the {param} has {chars} characters, more than the model's context of "
                f"{self.max_model_len} tokens can hold; shorten it",
                param,
            )

    async def _run(self, chars: int, fn: Callable[..., T], *args: object) -> T:
        if chars <= self.inline_chars:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _prompt_chars(prompt: str | list[int] | list[str] | list[list[int]]) -> int:
    """Characters of text to tokenize (token ids count zero: nothing to tokenize)."""
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(p) for p in prompt if isinstance(p, str))
