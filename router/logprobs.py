"""Engine logprobs (TokenLogprob) in the two OpenAI shapes: completions and chat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from workers.protocol import TokenLogprob

TokenText = Callable[[int], str]


def completion_logprobs(
    entries: Sequence[TokenLogprob], token_text: TokenText, text_offset: int
) -> dict[str, Any]:
    """`{"tokens", "token_logprobs", "top_logprobs", "text_offset"}` for a run of tokens;
    text_offset is where the first token starts in the choice's text."""
    tokens = [token_text(e.token_id) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(text_offset)
        text_offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{token_text(t): lp for t, lp in e.top} for e in entries],
        "text_offset": offsets,
    }


def merge_completion_logprobs(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    for part in parts:
        for key, values in merged.items():
            values.extend(part[key])
    return merged


def chat_logprobs(entries: Sequence[TokenLogprob], token_text: TokenText) -> dict[str, Any]:
    """`{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}`."""
    return {"content": [_chat_entry(e, token_text) for e in entries]}


def _chat_entry(entry: TokenLogprob, token_text: TokenText) -> dict[str, Any]:
    token = token_text(entry.token_id)
    return {
        "token": token,
        "logprob": entry.logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": token_text(t), "logprob": lp, "bytes": list(token_text(t).encode())}
            for t, lp in entry.top
        ],
    }
