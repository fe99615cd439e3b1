"""OpenAI response bodies for completions and chat, whole and as stream chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.choices import ChoiceUpdate
from router.logprobs import chat_logprobs, completion_logprobs
from router.prepared import Endpoint, PreparedRequest
from router.tokenizer import PromptTokenizer


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass
class FinalChoice:
    """A choice's whole output, gathered for a non-streaming response."""

    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None


class ResponseBuilder:
    def __init__(self, prepared: PreparedRequest, tokenizer: PromptTokenizer) -> None:
        self._prepared = prepared
        self._tokenizer = tokenizer
        self._chat = prepared.endpoint == Endpoint.CHAT
        self._offset = prepared.choice_offset

    def logprobs(self, update: ChoiceUpdate, text_offset: int) -> dict[str, Any] | None:
        if update.logprobs is None or not self._prepared.output.show_logprobs:
            return None
        if self._chat:
            return chat_logprobs(update.logprobs, self._tokenizer.token_text)
        return completion_logprobs(update.logprobs, self._tokenizer.token_text, text_offset)

    def chunk(self, update: ChoiceUpdate, logprobs: dict[str, Any] | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": update.index + self._offset}
        if self._chat:
            choice["delta"] = {"content": update.text} if update.text else {}
        else:
            choice["text"] = update.text
        choice["logprobs"] = logprobs
        choice["finish_reason"] = update.finish_reason
        return self._envelope(chunk=True, choices=[choice])

    def role_chunk(self, index: int) -> dict[str, Any]:
        """The first chat chunk of a choice: who speaks."""
        choice = {
            "index": index + self._offset,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._envelope(chunk=True, choices=[choice])

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return self._envelope(chunk=True, choices=[], usage=usage.body())

    def final(self, choices: list[FinalChoice], usage: Usage) -> dict[str, Any]:
        bodies = []
        for c in sorted(choices, key=lambda c: c.index):
            body: dict[str, Any] = {"index": c.index + self._offset}
            if self._chat:
                body["message"] = {"role": "assistant", "content": c.text}
            else:
                body["text"] = c.text
            body["logprobs"] = c.logprobs
            body["finish_reason"] = c.finish_reason
            bodies.append(body)
        return self._envelope(chunk=False, choices=bodies, usage=usage.body())

    def _envelope(self, chunk: bool, choices: list[dict[str, Any]], **extra: Any) -> dict:
        if self._chat:
            kind = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            kind = "text_completion"
        return {
            "id": self._prepared.response_id,
            "object": kind,
            "created": self._prepared.created,
            "model": self._prepared.model,
            "choices": choices,
            **extra,
        }
