"""Incremental detokenization equals decoding everything at once, however ids arrive."""

from __future__ import annotations

import random

import pytest

from router.detokenizer import REPLACEMENT_CHAR, IncrementalDetokenizer
from router.tokenizer import PromptTokenizer

TEXTS = ["héllo wörld", "你好世界 and 🙂🚀!", "def add(a, b):\n    return a + b", "ü🙂x"]


def stream(tok: PromptTokenizer, ids: list[int], sizes: list[int], **kwargs) -> list[str]:
    detok = IncrementalDetokenizer(tok, **kwargs)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(detok.push(ids[start : start + size]))
        start += size
    pieces.append(detok.push(ids[start:]))
    pieces.append(detok.flush())
    return pieces


@pytest.mark.parametrize("text", TEXTS)
def test_one_token_at_a_time_equals_full_decode(prompt_tokenizer, text) -> None:
    ids = prompt_tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = stream(prompt_tokenizer, ids, [1] * len(ids))
    assert "".join(pieces) == text
    # multi-byte characters never leak as U+FFFD halves
    assert all(REPLACEMENT_CHAR not in p for p in pieces)


def test_random_chunks_and_random_ids_equal_full_decode(prompt_tokenizer) -> None:
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(3, 300) for _ in range(rng.randrange(1, 30))]
        sizes = [rng.randrange(0, 4) for _ in range(10)]
        expected = prompt_tokenizer.decode(ids)
        assert "".join(stream(prompt_tokenizer, ids, sizes)) == expected


def test_special_tokens_are_skipped_or_kept(prompt_tokenizer) -> None:
    ids = prompt_tokenizer.tokenizer("hi", add_special_tokens=False)["input_ids"] + [2]
    assert "".join(stream(prompt_tokenizer, ids, [1] * len(ids))) == "hi"
    kept = stream(prompt_tokenizer, ids, [1] * len(ids), skip_special_tokens=False)
    assert "".join(kept) == "hi</s>"


def test_prompt_context_is_not_emitted(prompt_tokenizer) -> None:
    prompt = prompt_tokenizer.tokenizer("hello ")["input_ids"]
    ids = prompt_tokenizer.tokenizer("wörld", add_special_tokens=False)["input_ids"]
    pieces = stream(prompt_tokenizer, ids, [1] * len(ids), prompt_token_ids=prompt)
    assert "".join(pieces) == "wörld"
