"""Proposers: anything that, given a sequence, suggests its next k tokens.

All share one interface: `propose(queries) -> proposals` (None where it has nothing to
offer) and `release(key)` when a request ends. The engine treats every failure as "no
proposal": speculation degrades to plain decoding, never to an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Protocol

import torch

from workers.sampling_params import SamplingParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftQuery:
    """A sequence to draft for: token ids in, k proposals out."""

    key: str  # stable per request across steps
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    k: int
    sampling: SamplingParams
    stop_ids: tuple[int, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Proposal:
    """Up to k drafted tokens; probs [len, vocab] are the distributions they were drawn from
    (None: deterministic, as a one-hot at each token)."""

    token_ids: tuple[int, ...]
    probs: torch.Tensor | None = None


class Proposer(Protocol):
    def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]: ...

    def release(self, key: str) -> None: ...


class NgramProposer:
    """Prompt lookup: find the latest earlier occurrence of the sequence's last n tokens
    (longest n first) and propose what followed it. No model, deterministic."""

    def __init__(self, ngram_min: int = 1, ngram_max: int = 4) -> None:
        self.ngram_min = ngram_min
        self.ngram_max = ngram_max

    def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        return [self._one(q.token_ids, q.k) for q in queries]

    def release(self, key: str) -> None:
        return None

    def _one(self, tokens: tuple[int, ...], k: int) -> Proposal | None:
        for n in range(min(self.ngram_max, len(tokens) - 1), self.ngram_min - 1, -1):
            tail = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):
                if tokens[start : start + n] == tail:
                    follow = tokens[start + n : start + n + k]
                    return Proposal(tuple(follow)) if follow else None
        return None


RemoteClient = Callable[[list[DraftQuery]], list[Proposal | None]]


class RemoteProposer:
    """Proposals from a draft that runs elsewhere (a DraftServer on another node), through
    a plain callable. Calls past the deadline, exceptions and malformed replies count as
    failures and yield no proposal."""

    def __init__(self, client: RemoteClient, vocab_size: int, timeout_s: float) -> None:
        self.client = client
        self.vocab_size = vocab_size
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="tandem-remote-draft")
        self._pending: list[Future[list[Proposal | None]]] = []
        self.num_failures = 0

    def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        nothing: list[Proposal | None] = [None] * len(queries)
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= 2:  # earlier calls still hang: do not pile up
            self.num_failures += 1
            return nothing
        future = self._pool.submit(self.client, queries)
        self._pending.append(future)
        try:
            replies = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            logger.warning("remote draft slower than %.3f s; decoding plainly", self.timeout_s)
            self.num_failures += 1
            return nothing
        except Exception:  # any failure of the remote side means: no proposal
            logger.exception("remote draft failed; decoding plainly")
            self.num_failures += 1
            return nothing
        if not isinstance(replies, list) or len(replies) != len(queries):
            self.num_failures += 1
            return nothing
        return [self._valid(q, r) for q, r in zip(queries, replies, strict=True)]

    def release(self, key: str) -> None:
        return None

    def _valid(self, query: DraftQuery, reply: Proposal | None) -> Proposal | None:
        """The reply if well formed for this query, else None (and a failure counted)."""
        if reply is None:
            return None
        tokens = reply.token_ids
        ok = (
            isinstance(tokens, tuple)
            and 0 < len(tokens) <= query.k
            and all(isinstance(t, int) and 0 <= t < self.vocab_size for t in tokens)
            and _valid_probs(reply.probs, tokens, self.vocab_size)
        )
        if not ok:
            self.num_failures += 1
            return None
        return reply


def _valid_probs(probs: torch.Tensor | None, tokens: tuple[int, ...], vocab: int) -> bool:
    if probs is None:
        return True
    if not isinstance(probs, torch.Tensor) or tuple(probs.shape) != (len(tokens), vocab):
        return False
    if not torch.isfinite(probs).all() or (probs < 0).any():
        return False
    picked = probs[torch.arange(len(tokens)), torch.tensor(tokens)]
    return bool((picked > 0).all()) and bool(
        torch.allclose(probs.sum(-1), torch.ones(len(tokens)), atol=1e-3)
    )
