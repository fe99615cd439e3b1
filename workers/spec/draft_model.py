"""DraftModelProposer: a small model with its own paged KV cache that drafts k tokens.

It remembers, per request, which tokens its cache holds; each query is matched against that
(longest common prefix), so rejected drafts roll back on their own and the same proposer
serves a colocated draft and a DraftServer on another node alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workers.attention.select import paged_attention
from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager
from workers.model_runner import ModelRunner
from workers.models.loader import load_model
from workers.models.model_config import ModelConfig
from workers.sampler import draw, processed_logits, sampling_probs
from workers.scheduler_output import ScheduledSeq
from workers.sequence import make_generator
from workers.spec.draft_chain import DraftChain, chain_rows
from workers.spec.proposers import DraftQuery, Proposal


@dataclass
class _DraftState:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # tokens whose KV the cache holds
    generator: torch.Generator | None = None


class DraftModelProposer:
    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype,
        device: torch.device,
        num_blocks: int,
        block_size: int = 16,
        graph_batch: int = 0,
        graph_tokens: int = 1,
    ) -> None:
        """graph_batch > 0 (CUDA): draft steps of up to that many sequences replay CUDA
        graphs, catching up on up to graph_tokens accepted tokens per sequence at once."""
        cfg = ModelConfig.from_dir(model_dir)
        model = load_model(model_dir, paged_attention(cfg, device), dtype, device)
        model.fuse_projections()
        self.vocab_size = cfg.vocab_size
        self.runner = ModelRunner(
            model,
            num_blocks,
            block_size,
            dtype,
            device,
            graph_batch=graph_batch,
            max_model_len=cfg.max_position_embeddings,
            graph_tokens=graph_tokens,
        )
        self.kv = KVCacheManager(BlockPool(num_blocks, enable_caching=False), block_size)
        self.block_size = block_size
        self.chain = DraftChain(
            model,
            self.runner.kv_caches,
            block_size,
            max_steps=graph_tokens - 1,
            graph_batch=graph_batch,
            max_blocks=-(-cfg.max_position_embeddings // block_size),
            scratch_block=num_blocks,  # the runner's scratch block when it captures graphs
        )
        self._states: OrderedDict[str, _DraftState] = OrderedDict()
        self._next_id = 0

    def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        """Draft up to q.k tokens for each query: plain greedy ones in a chained round (one
        catch-up step, then the rest on the device), the others step by step, each group's
        queries batched per draft step."""
        live = [q for q in queries if q.k > 0 and self._prepare(q)]
        greedy = [q for q in live if _plain_greedy(q, len(q.token_ids))]  # all round long
        drafted = self._chained(greedy, busy={q.key for q in live})
        probs: dict[str, list[torch.Tensor]] = {}
        self._stepped([q for q in live if q.key not in drafted], drafted, probs)
        return [self._proposal(drafted.get(q.key), probs.get(q.key), q) for q in queries]

    def _chained(self, queries: list[DraftQuery], busy: set[str]) -> dict[str, list[int]]:
        """Greedy drafts: the catch-up step, then k - 1 chained steps fed on the device (KV
        slots for all of them allocated first), the ids copied to the host once."""
        batch = [
            (q, feed)
            for q in queries
            for feed in [self._unfed(q, [])]
            if self._room(q, len(feed) + q.k - 1, busy)
        ]
        if not batch:
            return {}
        seqs = tuple(self._scheduled(q, f) for q, f in batch)
        first = self.runner.forward_logits(seqs).argmax(-1)  # the catch-up step's drafts
        starts = [len(self._states[q.key].tokens) + len(f) for q, f in batch]
        rows = chain_rows(
            starts,
            [q.k - 1 for q, _ in batch],
            [self.kv.block_tables[self._states[q.key].seq_id] for q, _ in batch],
            self.block_size,
            self.chain.scratch_slot,
        )
        ids = first[None]
        if rows.num_steps:
            ids = torch.cat([ids, self.chain.run(first, rows)])
        drafted: dict[str, list[int]] = {}
        for (q, feed), tokens in zip(batch, ids.T.tolist(), strict=True):
            drafted[q.key] = tokens[: q.k]
            self._states[q.key].tokens += feed + tokens[: q.k - 1]  # all fed but the last
        return drafted

    def _stepped(
        self,
        live: list[DraftQuery],
        drafted: dict[str, list[int]],
        probs: dict[str, list[torch.Tensor]],
    ) -> None:
        """Drafts of the other queries, one step at a time (distributions on the host)."""
        busy = set(drafted) | {q.key for q in live}
        drafted.update({q.key: [] for q in live})
        probs.update({q.key: [] for q in live})
        for step in range(max((q.k for q in live), default=0)):
            batch = [
                (q, feed)
                for q in live
                if q.k > step
                for feed in [self._unfed(q, drafted[q.key])]
                if self._room(q, len(feed), busy)
            ]
            if not batch:
                break
            seqs = tuple(self._scheduled(q, f) for q, f in batch)
            logits = self.runner.forward_logits(seqs)
            greedy = [_plain_greedy(q, len(q.token_ids) + step) for q, _ in batch]
            # Greedy rows need only their argmax: taken on the device, ids alone cross over.
            best = logits.argmax(-1).tolist()
            rows = logits.float().cpu() if not all(greedy) else [None] * len(batch)
            for (q, feed), row, token, plain in zip(batch, rows, best, greedy, strict=True):
                state = self._states[q.key]
                state.tokens += feed
                if plain:
                    drafted[q.key].append(token)  # no distribution needed
                    continue
                assert row is not None
                history = state.tokens[q.num_prompt_tokens :]
                prompt = q.token_ids[: q.num_prompt_tokens]
                processed = processed_logits(
                    row, q.sampling, prompt, history, q.stop_ids, len(history)
                )
                p = sampling_probs(processed, q.sampling)
                drafted[q.key].append(draw(p, q.sampling, state.generator))
                probs[q.key].append(p)

    def release(self, key: str) -> None:
        state = self._states.pop(key, None)
        if state is not None:
            self.kv.free(state.seq_id)
            self.runner.forget((state.seq_id,))

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, q: DraftQuery) -> bool:
        """Roll the request's cache back to its common prefix with the query's tokens."""
        if any(not 0 <= t < self.vocab_size for t in q.token_ids):
            return False
        state = self._states.get(q.key)
        if state is None:
            state = _DraftState(self._next_id, generator=make_generator(q.seed, 1 << 20))
            self._next_id += 1
            self._states[q.key] = state
        self._states.move_to_end(q.key)
        known = min(len(state.tokens), len(q.token_ids))
        if state.tokens[:known] == list(q.token_ids[:known]):  # the usual case, compared in C
            common = known
        else:
            common = next(
                i for i, (a, b) in enumerate(zip(state.tokens, q.token_ids, strict=False)) if a != b
            )
        # The last known token is always fed again: its logits give the first draft.
        state.tokens = state.tokens[: min(common, len(q.token_ids) - 1)]
        if state.seq_id in self.kv.block_tables:
            self.kv.trim(state.seq_id, len(state.tokens))
        return True

    def _unfed(self, q: DraftQuery, drafted: list[int]) -> list[int]:
        """Tokens of the query and of this round's drafts that the cache does not hold."""
        known = len(self._states[q.key].tokens)
        return list(q.token_ids[known:]) + drafted[max(known - len(q.token_ids), 0) :]

    def _scheduled(self, q: DraftQuery, feed: list[int]) -> ScheduledSeq:
        state = self._states[q.key]
        return ScheduledSeq(
            seq_id=state.seq_id,
            request_id=q.key,
            token_ids=tuple(feed),
            start_pos=len(state.tokens),
            block_table=tuple(self.kv.block_tables[state.seq_id]),
            sample=True,
            sampling=q.sampling,
        )

    def _room(self, q: DraftQuery, num_new: int, busy: Iterable[str]) -> bool:
        """KV slots for this draft step, evicting idle requests' caches (least recently
        used first, never one of this round's) if short."""
        state = self._states[q.key]
        busy = set(busy)
        while self.kv.allocate_slots(state.seq_id, len(state.tokens), num_new) is None:
            idle = next((k for k in self._states if k not in busy), None)
            if idle is None:
                return False
            self.release(idle)
        return True

    def _proposal(
        self, tokens: list[int] | None, probs: list[torch.Tensor] | None, q: DraftQuery
    ) -> Proposal | None:
        if not tokens:
            return None
        # Greedy drafts are deterministic: no distributions (one-hot at each token).
        return Proposal(tuple(tokens), torch.stack(probs) if probs else None)


def _plain_greedy(q: DraftQuery, num_tokens: int) -> bool:
    """Whether the token after `num_tokens` tokens is the bare argmax: greedy, no penalties
    or logit bias, and min_tokens reached (else stop tokens are masked, as the target's
    verification will). The draft is not grammar-constrained: the target checks its tokens."""
    params = q.sampling
    outputs = num_tokens - q.num_prompt_tokens
    plain = not params.has_penalties and not params.logit_bias
    return params.greedy and plain and outputs >= params.min_tokens
