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
        "top_logprobs": [_top_with_chosen(e, token_text) for e in entries],
        "text_offset": offsets,
    }


def _top_with_chosen(entry: TokenLogprob, token_text: TokenText) -> dict[str, float] | None:
    """The top alternatives, plus the chosen token where it fell outside them (as vLLM
    does: a client can tell whether the choice was the most likely). None for the prompt's
    first token, which has no log-probability."""
    if entry.logprob is None:
        return None
    top = {token_text(t): lp for t, lp in entry.top}
    if entry.top and entry.token_id not in {t for t, _ in entry.top}:
        top[token_text(entry.token_id)] = entry.logprob
    return top


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
