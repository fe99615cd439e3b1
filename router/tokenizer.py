"""The tokenizer as the router uses it: prompts to ids (with the chat template), ids to text."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from router.errors import bad_request
from router.schema import ChatMessage


class PromptTokenizer:
    """Wraps a Hugging Face tokenizer (anything with encode/decode/apply_chat_template)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._token_text = lru_cache(maxsize=65536)(self._decode_one)
        # every vocabulary entry's stored form is at least as long as the text it decodes to
        # (byte-level and byte-fallback pieces are longer), so no token covers more characters
        self.max_token_chars = max((len(t) for t in tokenizer.get_vocab()), default=1)

    @classmethod
    def from_pretrained(cls, path: str) -> PromptTokenizer:
        from transformers import AutoTokenizer  # heavy import, only where a model is loaded

        return cls(AutoTokenizer.from_pretrained(path))

    def encode_prompts(
        self, prompt: str | list[int] | list[str] | list[list[int]]
    ) -> list[tuple[int, ...]]:
        """Every prompt of a completions request: one, or a list of texts or id lists."""
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
            return [self.encode_prompt(p) for p in prompt]
        if isinstance(prompt, list) and not prompt:
            raise bad_request("the prompt is empty; send at least one token", "prompt")
        # a text or one id list here: lists of texts or of id lists returned above
        return [self.encode_prompt(cast("str | list[int]", prompt))]

    def encode_prompt(self, prompt: str | list[int]) -> tuple[int, ...]:
        """A completion prompt: text (special tokens added as the tokenizer does) or ids."""
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
            if len(prompt) != 1:
                raise bad_request(f"got {len(prompt)} prompts where one was expected", "prompt")
            prompt = prompt[0]
        text_or_ids = prompt
        ids = (
            self.tokenizer(text_or_ids)["input_ids"]
            if isinstance(text_or_ids, str)
            else list(text_or_ids)
        )
        if not ids:
            raise bad_request("the prompt is empty; send at least one token", "prompt")
        return tuple(int(t) for t in ids)

    def encode_chat(
        self,
        messages: Sequence[ChatMessage],
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> tuple[int, ...]:
        """Render the conversation (and the tools the model may call) with the model's chat
        template, then tokenize it."""
        if not messages:
            raise bad_request("messages is empty; send at least one message", "messages")
        if not getattr(self.tokenizer, "chat_template", None):
            raise bad_request(
                "this model has no chat template; use /v1/completions instead", "messages"
            )
        from router.tools import template_messages

        conversation = template_messages(messages)
        extra = {"tools": list(tools)} if tools else {}
        try:
            text = self.tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=add_generation_prompt, **extra
            )
        except Exception as e:  # template errors are Jinja's own exception types
            raise bad_request(f"the chat template rejected the messages: {e}", "messages") from e
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, text: str, add_special_tokens: bool = True) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """One token's text, as logprobs show it."""
        return self._token_text(token_id)

    def _decode_one(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)
