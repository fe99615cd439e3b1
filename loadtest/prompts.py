"""Prompts of a requested token length, different every time (so the prefix cache cannot
make a load test look faster than real traffic).

With a tokenizer (a Hugging Face `tokenizer.json`) lengths are exact to within the re-encoding
of a cut; without one, one word counts as one token, which is close for the code-like words
used here and for most BPE vocabularies.
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer

_TEXT = (
    "the request router picks a replica for every prompt while the engine schedules tokens "
    "under a budget and the cache keeps blocks of keys and values for each sequence so that "
    "def return class import from with for while if else try except raise yield async await "
    "value index count total buffer stream block table shape batch step token model layer "
    "weight adapter draft accept reject sample greedy beam queue worker node cluster metric "
    "latency throughput request response client server session header payload retry limit "
    "start stop open close read write parse format check update merge split join order "
    "list dict set tuple string number float integer boolean none true false self args"
)
WORDS = tuple(_TEXT.split())


class PromptFactory:
    def __init__(self, rng: random.Random, tokenizer_file: str | Path | None = None) -> None:
        self._rng = rng
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file else None

    def prompt(self, num_tokens: int) -> str:
        """A fresh prompt of about `num_tokens` tokens (numbered, so no two share a prefix)."""
        head = f"{self._rng.randrange(10**8)}:"
        if self._tokenizer is None:
            return " ".join([head, *self._words(max(num_tokens - 1, 0))])
        words = self._words(num_tokens * 2 + 8)
        ids = self._tokenizer.encode(" ".join([head, *words]), add_special_tokens=False).ids
        return self._tokenizer.decode(ids[:num_tokens])

    def _words(self, n: int) -> list[str]:
        return [self._rng.choice(WORDS) for _ in range(n)]


def find_tokenizer(model_dir: str | Path) -> Path | None:
    path = Path(model_dir) / "tokenizer.json"
    return path if path.is_file() else None
