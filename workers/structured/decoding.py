"""StructuredDecoding: one grammar matcher per constrained sequence, and the token masks of
its sample rows.

Each sequence (each of n samples) has its own xgrammar GrammarMatcher, created from the
request's compiled grammar when the sequence first samples, and advanced by the tokens it
emits. A step's masks are filled by `prepare` after the forward is queued on the device and
before its logits are copied to the host, so on a GPU the mask work overlaps the forward.

Speculative steps: row j of a drafted sequence is masked as if drafts 0..j-1 were accepted
(the matcher accepts them in turn, then rolls back). The first draft the grammar rejects ends
the run: verification sees it with probability 0 and rejects it, so the emitted tokens are
exactly those of decoding without drafts (lossless), and always valid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from workers.scheduler_output import ScheduledSeq
from workers.stop_checker import stop_token_ids
from workers.structured.compiler import GrammarCompilation

if TYPE_CHECKING:  # imported where used: the engine runs without xgrammar
    import xgrammar as xgr

_BITS = torch.arange(32, dtype=torch.int32)


@dataclass(frozen=True)
class StepMask:
    """bitmask [rows, ceil(vocab / 32)] int32 (bit b of word w: token 32 * w + b allowed):
    row j after the first j drafts. num_valid_drafts: the leading drafts the grammar accepts
    (rows = num_valid_drafts + 1)."""

    bitmask: torch.Tensor
    num_valid_drafts: int

    def allowed(self, vocab_size: int) -> torch.Tensor:
        """[rows, vocab_size] bool."""
        bits = (self.bitmask[:, :, None] >> _BITS) & 1
        return bits.bool().flatten(1)[:, :vocab_size]


@dataclass
class _SeqGrammar:
    matcher: xgr.GrammarMatcher
    num_accepted: int = 0  # output tokens the matcher has accepted


class StructuredDecoding:
    def __init__(self, compilation: GrammarCompilation, eos_token_ids: tuple[int, ...]) -> None:
        self.compilation = compilation
        self.eos_token_ids = eos_token_ids
        self._seqs: dict[int, _SeqGrammar] = {}
        # Masks filled ahead for this step: seq id -> (outputs, drafts) they assume, mask.
        self._ready: dict[int, tuple[tuple[int, tuple[int, ...]], StepMask | Exception]] = {}
        self.mask_seconds = 0.0  # time spent filling masks, and how many (benchmarks read them)
        self.mask_fills = 0

    def prepare(self, seqs: Sequence[ScheduledSeq]) -> None:
        """Fill the masks of this step's constrained sampling rows ahead of sampling. A
        failure is kept and raised by mask() for its sequence alone."""
        self._ready.clear()
        for s in seqs:
            if s.sample and s.sampling.structured is not None:
                try:
                    mask: StepMask | Exception = self._fill(s)
                except Exception as e:  # this request fails alone, when it samples
                    mask = e
                self._ready[s.seq_id] = ((s.num_output_tokens, s.spec_token_ids), mask)

    def mask(self, s: ScheduledSeq) -> StepMask:
        """The sequence's masks for this step (filled by prepare, or now)."""
        ready = self._ready.pop(s.seq_id, None)
        if ready is None or ready[0] != (s.num_output_tokens, s.spec_token_ids):
            return self._fill(s)
        if isinstance(ready[1], Exception):
            raise ready[1]
        return ready[1]

    def accept(self, s: ScheduledSeq, tokens: Iterable[int]) -> None:
        """Advance the sequence's matcher by the tokens it emits this step (up to and
        including a stop token, which completes the grammar)."""
        entry = self._seqs[s.seq_id]
        for token in tokens:
            if entry.matcher.is_terminated():
                break  # a stop token ended the sequence; what follows is dropped
            if not entry.matcher.accept_token(token):
                raise RuntimeError(f"the grammar rejected token {token}, which its mask allowed")
            entry.num_accepted += 1

    def retain(self, live_seq_ids: set[int]) -> None:
        """Drop the matchers of sequences that are gone (finished, aborted, failed)."""
        for seq_id in [i for i in self._seqs if i not in live_seq_ids]:
            del self._seqs[seq_id]

    @property
    def num_matchers(self) -> int:
        return len(self._seqs)

    def _fill(self, s: ScheduledSeq) -> StepMask:
        import xgrammar as xgr

        start = time.perf_counter()
        matcher = self._matcher(s)
        drafts = s.spec_token_ids
        bitmask = xgr.allocate_token_bitmask(len(drafts) + 1, self.compilation.vocab_size)
        matcher.fill_next_token_bitmask(bitmask, 0)
        valid = 0
        for token in drafts:
            if not matcher.accept_token(token):
                break
            valid += 1
            if not matcher.is_terminated():  # after a stop token no row is emitted
                matcher.fill_next_token_bitmask(bitmask, valid)
        if valid:
            matcher.rollback(valid)
        self.mask_seconds += time.perf_counter() - start
        self.mask_fills += 1
        return StepMask(bitmask[: valid + 1], valid)

    def _matcher(self, s: ScheduledSeq) -> xgr.GrammarMatcher:
        """The sequence's matcher at its known outputs (rolled back if a step that never
        reached the sequence, e.g. one re-run after a failure, advanced it)."""
        import xgrammar as xgr

        entry = self._seqs.get(s.seq_id)
        if entry is None:
            assert s.num_output_tokens == 0, "a constrained sequence lost its matcher"
            structured = s.sampling.structured
            assert structured is not None
            stops = sorted(stop_token_ids(s.sampling, self.eos_token_ids))
            matcher = xgr.GrammarMatcher(
                self.compilation.get(structured), override_stop_tokens=stops or None
            )
            entry = self._seqs[s.seq_id] = _SeqGrammar(matcher)
        extra = entry.num_accepted - s.num_output_tokens
        assert extra >= 0, "a constrained sequence has outputs its matcher never saw"
        if extra:
            entry.matcher.rollback(extra)
            entry.num_accepted -= extra
        return entry.matcher
