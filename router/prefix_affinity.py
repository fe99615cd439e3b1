"""Prefix affinity: remember which replica last served a prompt prefix, so requests that
share a prefix (a system prompt, a few-shot header, a conversation) land where its KV blocks
are already cached.

Prompts are cut into chunks of `chunk_tokens`; chunk i's key hashes chunks 0..i (and the
adapter, since KV computed under one adapter is not reused for another). The longest known
key wins.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AffinityMatch:
    replica_id: str
    num_tokens: int  # length of the matched prefix


class PrefixAffinity:
    def __init__(self, chunk_tokens: int = 16, max_chunks: int = 64, capacity: int = 50_000):
        assert chunk_tokens >= 1 and max_chunks >= 1 and capacity >= 1
        self.chunk_tokens = chunk_tokens
        self.max_chunks = max_chunks
        self.capacity = capacity
        self._owners: OrderedDict[int, str] = OrderedDict()  # LRU: oldest first

    def keys(self, prompt: Sequence[int], adapter: str | None) -> list[int]:
        """One chained hash per full chunk of the prompt (at most max_chunks)."""
        keys = []
        key = hash(("tandem-prefix", adapter or ""))
        usable = min(len(prompt) // self.chunk_tokens, self.max_chunks)
        for i in range(usable):
            chunk = tuple(prompt[i * self.chunk_tokens : (i + 1) * self.chunk_tokens])
            key = hash((key, chunk))
            keys.append(key)
        return keys

    def lookup(self, keys: Sequence[int], live_replicas: set[str]) -> AffinityMatch | None:
        """The replica that served the longest of these prefixes, if it is still live."""
        for i in range(len(keys) - 1, -1, -1):
            owner = self._owners.get(keys[i])
            if owner is not None and owner in live_replicas:
                return AffinityMatch(owner, (i + 1) * self.chunk_tokens)
        return None

    def record(self, keys: Sequence[int], replica_id: str) -> None:
        for key in keys:
            self._owners[key] = replica_id
            self._owners.move_to_end(key)
        while len(self._owners) > self.capacity:
            self._owners.popitem(last=False)

    def forget_replica(self, replica_id: str) -> None:
        for key in [k for k, owner in self._owners.items() if owner == replica_id]:
            del self._owners[key]
