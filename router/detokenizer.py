"""Incremental detokenization: token ids arrive a few at a time, text leaves in pieces whose
concatenation equals decoding all the ids at once.

Two things make this harder than decoding each new token: one character may span several
tokens (byte-level BPE splits UTF-8 bytes), and a token's text can depend on its left
neighbour (SentencePiece drops a word's leading space at the start of a string). So each step
decodes a short window that starts one emission back, and emits the part past what that
window decoded to before; a window ending in an incomplete character waits for more tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"
PROMPT_CONTEXT_TOKENS = 4


class Decoder(Protocol):
    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    """Feed new token ids with `push`; call `flush` once at the end of the sequence."""

    def __init__(
        self,
        tokenizer: Decoder,
        prompt_token_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        # A few prompt tokens give the first output token its left context.
        self._ids: list[int] = list(prompt_token_ids[-PROMPT_CONTEXT_TOKENS:])
        self._window_start = 0  # the decoding window begins here
        self._emitted_end = len(self._ids)  # ids before this are in the emitted text

    def push(self, token_ids: Sequence[int]) -> str:
        """The new text that `token_ids` complete ("" while a character is unfinished)."""
        self._ids.extend(token_ids)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character decodes as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._emitted_end == len(self._ids):
            return ""
        before = self._decode(self._ids[self._window_start : self._emitted_end])
        text = self._decode(self._ids[self._window_start :])
        if not final and text.endswith(REPLACEMENT_CHAR):
            return ""
        self._window_start = self._emitted_end
        self._emitted_end = len(self._ids)
        return text[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special)
