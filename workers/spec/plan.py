"""What the scheduler and the speculator say to each other each step.

The scheduler owns the step: inside schedule() it asks `plan(DraftRound)` for drafts of the
sequences it scheduled, reserves their KV slots itself and carries the DraftPlan in the
SchedulerOutput; update_from_output() tells the speculator how verification went with
`observe(DraftOutcome)`. The speculator never sees the scheduler's queues or the KV cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workers.protocol import SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.proposers import DraftQuery, Proposal


@dataclass(frozen=True)
class DraftCandidate:
    """A scheduled sequence of a request that asks for speculation.

    eligible: it decodes one token alone this step (one sample, no beams), so drafts can
    be verified with it. room: the most drafts that fit before max_tokens or the end of
    the context. token_ids is the sequence's own list, read during plan() only."""

    seq_id: int
    request_id: str
    mode: SpeculationMode
    adapter_key: str | None
    eligible: bool
    room: int
    token_ids: Sequence[int]
    num_prompt_tokens: int
    sampling: SamplingParams
    stop_ids: frozenset[int]

    def query(self, k: int) -> DraftQuery:
        return DraftQuery(
            key=self.request_id,
            token_ids=tuple(self.token_ids),
            num_prompt_tokens=self.num_prompt_tokens,
            k=k,
            sampling=self.sampling,
            stop_ids=tuple(sorted(self.stop_ids)),
            seed=self.sampling.seed,
        )


@dataclass(frozen=True)
class DraftRound:
    """The scheduler's question for one step.

    With tokens_known (schedule()): drafts for `candidates`, within `budget` more tokens;
    decode_only: every scheduled sequence computes one token. Without (schedule_ahead(),
    before the step is scheduled ahead of one in flight whose tokens are not known yet):
    nothing can be drafted; the plan says whether the step should rather wait for those
    tokens, so that it can draft. `modes` are the modes the running requests ask for."""

    batch_size: int
    candidates: tuple[DraftCandidate, ...] = ()
    budget: int = 0
    decode_only: bool = False
    tokens_known: bool = True
    modes: frozenset[SpeculationMode] = frozenset()


@dataclass(frozen=True)
class DraftPlan:
    """The speculator's answer. drafts and modes per seq_id (the proposer of each);
    gate: whether the throughput gate let this step draft, if the step is one of its
    samples (None: it measures nothing); wait: (ahead rounds) drafting would pay, so the
    step is to be scheduled once the tokens in flight are known."""

    drafts: Mapping[int, Proposal] = field(default_factory=dict)
    modes: Mapping[int, SpeculationMode] = field(default_factory=dict)
    gate: bool | None = None
    wait: bool = False


NO_DRAFTS = DraftPlan()


@dataclass(frozen=True)
class Verified:
    """How one drafted sequence's drafts fared: num_accepted of num_drafted were kept."""

    seq_id: int
    request_id: str
    adapter_key: str | None
    num_drafted: int
    num_accepted: int


@dataclass(frozen=True)
class DraftOutcome:
    """A step's output as the speculator learns from it: the plan it ran with, the batch
    it ran in, whether every sequence computed one token besides its drafts, each drafted
    sequence's verification, the requests that ended (their state is released) and the
    tokens the step gave requests in `seconds`, drafting included."""

    plan: DraftPlan
    batch_size: int
    decode_only: bool
    verified: tuple[Verified, ...]
    finished: frozenset[str]
    num_tokens: int
    seconds: float


class DraftPlanner(Protocol):
    """The speculator as the scheduler sees it."""

    def plan(self, round: DraftRound) -> DraftPlan: ...

    def observe(self, outcome: DraftOutcome) -> None: ...

    def release(self, request_id: str) -> None: ...
