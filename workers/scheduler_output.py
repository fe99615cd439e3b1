"""What the scheduler hands the model runner each step, and what comes back.

A step crosses as differences: the runner keeps every live sequence's block table and
token history (workers/input_batch.py). A sequence it does not hold comes with `new` (its
tokens, once) and its whole table; one it holds comes with the blocks appended or replaced
since (`blocks`) and its tokens of the step; the runner appends the tokens it samples
itself. `freed_seq_ids` are the sequences whose rows it drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workers.kv_cache.table_changes import BlockUpdate
from workers.protocol import TokenLogprob
from workers.records import record
from workers.request_failure import RequestFailure
from workers.running_decodes import RunningDecodes
from workers.sampling_params import SamplingParams
from workers.spec.plan import DraftPlan


@record
class NewSeq:
    """A sequence the runner does not hold yet: every token known so far (the prompt, then
    any outputs: a fork, or a request readmitted after preemption)."""

    token_ids: tuple[int, ...]
    num_prompt_tokens: int


@record
class ScheduledSeq:
    """One sequence's share of a step: `token_ids` are computed at positions
    start_pos.. and written to its block table; if `sample`, the last one's logits pick the
    next token (or, with beam_topk > 0, return the best beam_topk log-probabilities).

    blocks: how the table changed since the runner got it (the whole table when `new` is
    set); None: the runner keeps no state of it and takes `block_table` whole (the draft
    model's steps). block_table is the scheduler's snapshot, the same tuple until it
    changes."""

    seq_id: int
    request_id: str
    token_ids: tuple[int, ...]
    start_pos: int
    block_table: tuple[int, ...]
    sample: bool
    sampling: SamplingParams
    generator: torch.Generator | None = None
    blocks: BlockUpdate | None = None
    new: NewSeq | None = None
    # The token history penalties need, filled in by the runner from its own history (for
    # requests with penalties), and the number of outputs known before this step (min_tokens
    # holds stop tokens back until then), from the scheduler.
    prompt_token_ids: tuple[int, ...] = ()
    output_token_ids: tuple[int, ...] = ()
    num_output_tokens: int = 0
    beam_topk: int = 0
    adapter_key: str | None = None
    spec_token_ids: tuple[int, ...] = ()
    spec_probs: torch.Tensor | None = None  # [k, vocab]; None: deterministic proposals
    # Prompt log-probabilities: rows for positions prompt_row_start.. (count num_prompt_rows),
    # before the sample rows; their next tokens, and how many top alternatives to return.
    prompt_row_start: int = 0
    num_prompt_rows: int = 0
    prompt_next_ids: tuple[int, ...] = ()
    prompt_top: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_sample_rows(self) -> int:
        """Positions whose logits are needed: the drafted ones plus the next token."""
        return len(self.spec_token_ids) + 1 if self.sample else 0

    @property
    def num_logit_rows(self) -> int:
        """Rows of the step's logits this sequence owns: prompt rows, then sample rows."""
        return self.num_prompt_rows + self.num_sample_rows


def plain_greedy(s: ScheduledSeq) -> bool:
    """Greedy with nothing that changes the argmax (penalties, a logit bias, a grammar,
    held-back stop tokens)."""
    params = s.sampling
    return (
        params.greedy
        and not params.changes_argmax
        and s.num_output_tokens >= params.min_tokens
        and not s.beam_topk
    )


@dataclass(frozen=True)
class SchedulerOutput:
    """One step: the sequences to compute (drafted tokens included, whose KV slots the
    scheduler reserved), block copies to do first, and what the speculator planned for it
    (learnt from when its output comes back). num_running_seqs: the batch it runs in.
    freed_seq_ids: sequences the runner held that have left (finished, aborted, failed,
    preempted, replaced beams); their rows go before this step's sequences are applied.
    decodes: running sequences that decode one token by bare argmax, as columns
    (workers/running_decodes.py), after `seqs` in the step; None: every sequence is in
    `seqs`."""

    seqs: tuple[ScheduledSeq, ...]
    block_copies: tuple[tuple[int, int], ...] = ()
    freed_seq_ids: tuple[int, ...] = ()
    num_preempted: int = 0
    speculation: DraftPlan | None = None
    num_running_seqs: int = 0
    decodes: RunningDecodes | None = None

    @property
    def num_decodes(self) -> int:
        return 0 if self.decodes is None else len(self.decodes)

    @property
    def num_seqs(self) -> int:
        return len(self.seqs) + self.num_decodes

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.seqs) + self.num_decodes

    @property
    def empty(self) -> bool:
        return not self.seqs and not self.num_decodes

    @property
    def draft_token_ids(self) -> dict[str, tuple[int, ...]]:
        """The drafted tokens the step verifies, per request."""
        return {s.request_id: s.spec_token_ids for s in self.seqs if s.spec_token_ids}

    @property
    def overlappable(self) -> bool:
        """Whether the next step can be scheduled before this one's tokens are known: every
        sequence samples at most one token, greedily on the device, and nothing forks."""
        for s in self.seqs:
            params = s.sampling
            if params.n > 1 or params.use_beam_search or s.spec_token_ids or s.num_prompt_rows:
                return False
            if s.sample and not (plain_greedy(s) and not params.logprobs):
                return False
        return not self.empty


@dataclass(frozen=True)
class ModelRunnerOutput:
    """sampled: the tokens each sampling sequence appends (one, or with speculation the
    accepted drafts and one more); logprob is the model's raw log-probability and `top` is
    filled when the request asked for logprobs.
    beam_topk: (token id, processed log-probability) pairs, best first, per beam.
    failed: requests whose own part of the step failed (their sequences are in neither).
    decoded: the token each column of the step's RunningDecodes samples, in column order
    (NO_TOKEN where its request failed); () when the step has none. Those columns are not
    in `sampled`."""

    sampled: dict[int, tuple[TokenLogprob, ...]]
    beam_topk: dict[int, tuple[tuple[int, float], ...]]
    failed: tuple[RequestFailure, ...] = ()
    # per seq_id: the prompt log-probabilities this step computed (its prompt rows)
    prompt_logprobs: dict[int, tuple[TokenLogprob, ...]] | None = None
    decoded: tuple[int, ...] = ()
