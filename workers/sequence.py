"""Mutable per-request state inside the engine: a Request owns one or more Sequences."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from workers.beam_search import BeamState, beams_to_keep
from workers.protocol import FinishReason, GenerateRequest, TokenLogprob
from workers.sampling_params import SamplingParams

_seq_ids = itertools.count()

# Stands in token_ids for a token an in-flight step is still sampling (its id is on the
# device); never a valid token id.
PLACEHOLDER = -1


@dataclass(eq=False)
class Sequence:
    """One stream of tokens (a sample of `n`, or a beam) with its KV progress."""

    index: int
    token_ids: list[int]
    num_prompt_tokens: int
    generator: torch.Generator | None = None
    seq_id: int = field(default_factory=lambda: next(_seq_ids))
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0
    num_sent_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    cum_logprob: float = 0.0
    num_drafted_tokens: int = 0
    num_accepted_tokens: int = 0
    finish_reason: FinishReason | None = None
    num_pending: int = 0  # trailing PLACEHOLDERs: tokens of steps still in flight

    @property
    def num_tokens(self) -> int:
        """Tokens the scheduler plans with, those still being sampled included."""
        return len(self.token_ids)

    @property
    def num_known_tokens(self) -> int:
        return len(self.token_ids) - self.num_pending

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens : self.num_known_tokens]

    @property
    def num_output_tokens(self) -> int:
        return self.num_known_tokens - self.num_prompt_tokens

    def outputs_from(self, start: int) -> tuple[int, ...]:
        """Known output tokens from the start-th on (without copying the ones before)."""
        return tuple(self.token_ids[self.num_prompt_tokens + start : self.num_known_tokens])

    def add_pending(self) -> None:
        """A step that samples this sequence is in flight; its token comes later."""
        self.token_ids.append(PLACEHOLDER)
        self.num_pending += 1

    def resolve_pending(self, token_id: int) -> None:
        """The oldest in-flight token is known."""
        self.token_ids[self.num_known_tokens] = token_id
        self.num_pending -= 1

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def fork(self, index: int, generator: torch.Generator | None) -> Sequence:
        """A copy with a new id; the caller shares its KV blocks."""
        return Sequence(
            index=index,
            token_ids=list(self.token_ids),
            num_prompt_tokens=self.num_prompt_tokens,
            generator=generator,
            num_computed_tokens=self.num_computed_tokens,
            num_cached_tokens=self.num_cached_tokens,
            num_sent_tokens=self.num_sent_tokens,
            logprobs=list(self.logprobs),
            cum_logprob=self.cum_logprob,
        )


def make_generator(seed: int | None, index: int) -> torch.Generator | None:
    """Per-sample generator: the same seed gives the same samples whatever the batch."""
    if seed is None:
        return None
    # manual_seed takes [-2**63, 2**64): fold any 64-bit seed and sample index into it.
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**64)


@dataclass(eq=False)
class Request:
    """A request's sequences: one until the prompt is shared, then `n` samples or the beams."""

    spec: GenerateRequest
    order: int
    seqs: list[Sequence] = field(default_factory=list)
    forked: bool = False
    cache_key: str = ""
    adapter_key: str | None = None
    stop_ids: frozenset[int] = frozenset()
    beam: BeamState | None = None
    # Entries for prompt tokens 1, 2, ... as the prefill computes them (prompt_logprobs).
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.seqs:
            self.seqs = [self.new_root()]
        params = self.sampling
        self._fans_out = params.n > 1 and not params.use_beam_search  # n samples, not beams
        # One sequence whose decodes take the bare argmax and return no logprobs: it can go
        # to the runner as a column of RunningDecodes (once past min_tokens).
        self.decodes_plainly = (
            params.n == 1
            and params.greedy
            and not params.changes_argmax
            and not params.use_beam_search
            and params.logprobs is None
            and params.prompt_logprobs is None
        )
        if params.use_beam_search:
            self.beam = BeamState(self.sampling.beam_width, self.sampling.length_penalty)

    def reset_beams(self) -> None:
        """Back to the prompt alone (after preemption: beam search is deterministic)."""
        assert self.beam is not None
        self.seqs = [self.new_root()]
        self.beam.reset()

    @property
    def beam_topk(self) -> int:
        return beams_to_keep(self.sampling.beam_width, len(self.stop_ids))

    def new_root(self) -> Sequence:
        prompt = list(self.spec.prompt_token_ids)
        return Sequence(0, prompt, len(prompt), make_generator(self.spec.sampling.seed, 0))

    @property
    def request_id(self) -> str:
        return self.spec.request_id

    @property
    def sampling(self) -> SamplingParams:
        return self.spec.sampling

    @property
    def sort_key(self) -> tuple[int, float, int]:
        return (self.spec.priority, self.spec.arrival_time, self.order)

    @property
    def width(self) -> int:
        """Sequences this request runs at once when fully forked."""
        params = self.sampling
        return params.beam_width if params.use_beam_search else params.n

    @property
    def finished(self) -> bool:
        return not self.seqs

    def prefill_target(self, seq: Sequence) -> int:
        """Tokens to compute before the next step: all of them, except that a request with
        n > 1 first computes its prompt but the last token once, then forks."""
        if self.needs_fork:
            return max(seq.num_prompt_tokens - 1, 0)
        return seq.num_tokens

    def prompt_logprob_rows(self, start: int, end: int) -> tuple[int, int]:
        """(first position, count) of the positions in [start, end) whose logits give a
        prompt token's log-probability not recorded yet: position p predicts token p + 1."""
        if self.sampling.prompt_logprobs is None:
            return (0, 0)
        first = max(start, len(self.prompt_logprobs))
        last = min(end, self.spec_num_prompt_tokens - 1)
        return (first, max(last - first, 0))

    @property
    def spec_num_prompt_tokens(self) -> int:
        return len(self.spec.prompt_token_ids)

    @property
    def needs_fork(self) -> bool:
        return self._fans_out and not self.forked
