"""The runner's batched sampling of a step (workers/step_sampling.py) and of its beams
(workers/sampler_beams.py) gives every sequence exactly what the per-row reference gives it
alone: processed_logits row by row (drafts counted as outputs), the grammar's mask,
sampling_probs, then draw or verify_drafts from the sequence's own generator; the same
log-probabilities and alternatives; the same beam candidates."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from workers.protocol import TokenLogprob
from workers.sampler import draw, processed_logits, sampling_probs, top_logprobs
from workers.sampler_beams import beam_candidates
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ScheduledSeq
from workers.spec.verify import verify_drafts
from workers.step_sampling import PendingSeq, sample_seqs
from workers.structured.decoding import StepMask

VOCAB = 48
STOPS = frozenset({2, 3})

PARAMS = [
    SamplingParams(temperature=0),
    SamplingParams(temperature=0, logprobs=3, repetition_penalty=1.6),
    SamplingParams(temperature=0, min_tokens=4, logit_bias=((9, 3.0),)),
    SamplingParams(temperature=0.8, top_k=6, logprobs=2),
    SamplingParams(temperature=1.2, top_p=0.8, frequency_penalty=0.7, presence_penalty=0.3),
    SamplingParams(temperature=1.0, min_p=0.05, min_tokens=3, logprobs=1),
    SamplingParams(temperature=0.7, top_k=10, top_p=0.9, repetition_penalty=0.6),
    SamplingParams(temperature=1.0, logit_bias=((4, 2.0), (5, -1.0))),
]


def bitmask_of(allowed: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] bool as xgrammar's int32 bitmask [rows, ceil(vocab / 32)]."""
    rows, vocab = allowed.shape
    words = -(-vocab // 32)
    padded = torch.zeros(rows, words * 32, dtype=torch.int64)
    padded[:, :vocab] = allowed.long()
    weights = (2 ** torch.arange(32, dtype=torch.int64))[None, None, :]
    packed = (padded.view(rows, words, 32) * weights).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def grammar_mask(rng: random.Random, logits: torch.Tensor, drafts: tuple[int, ...]) -> StepMask:
    """A grammar allowing some likely tokens per row, up to the first draft it rejects."""
    allowed = torch.zeros(len(drafts) + 1, VOCAB, dtype=torch.bool)
    for j in range(len(drafts) + 1):
        best = logits[j].topk(8).indices.tolist()
        allowed[j, rng.sample(best, 4)] = True
    valid = next((j for j, t in enumerate(drafts) if not allowed[j, t]), len(drafts))
    return StepMask(bitmask_of(allowed[: valid + 1]), valid)


def random_step(rng: random.Random, logits_rows: list[torch.Tensor]) -> list[PendingSeq]:
    """Sequences with and without drafts (likely ones, so that some are accepted), with
    and without draft distributions, histories, held-back stop tokens and grammars."""
    seqs = []
    row = 0
    for seq_id in range(rng.randint(1, 9)):
        params = rng.choice(PARAMS)
        k = rng.choice([0, 0, 1, 2, 3])
        logits = torch.randn(k + 1, VOCAB, generator=torch.Generator().manual_seed(seq_id)) * 3
        drafts = tuple(
            int(logits[j].topk(3).indices[rng.randrange(3)]) if rng.random() < 0.8 else 7
            for j in range(k)
        )
        spec_probs = None
        if k and rng.random() < 0.5:
            spec_probs = torch.softmax(torch.randn(k, VOCAB) * 2, -1)
            spec_probs[torch.arange(k), torch.tensor(drafts)] += 0.5
            spec_probs /= spec_probs.sum(-1, keepdim=True)
        mask = grammar_mask(rng, logits, drafts) if rng.random() < 0.25 else None
        outputs = tuple(rng.randrange(VOCAB) for _ in range(rng.randint(0, 5)))
        s = ScheduledSeq(
            seq_id=seq_id,
            request_id=f"r{seq_id}",
            token_ids=(1,),
            start_pos=0,
            block_table=(),
            sample=True,
            sampling=params,
            generator=torch.Generator().manual_seed(1000 + seq_id),
            prompt_token_ids=tuple(rng.randrange(VOCAB) for _ in range(4)),
            output_token_ids=outputs,
            num_output_tokens=len(outputs),
            spec_token_ids=drafts,
            spec_probs=spec_probs,
        )
        if rng.random() < 0.3:  # prompt rows or another sequence's rows between
            logits_rows.append(torch.randn(1, VOCAB))
            row += 1
        seqs.append(PendingSeq(s, row, STOPS, mask))
        logits_rows.append(logits)
        row += k + 1
    return seqs


def reference(
    p: PendingSeq, logits: torch.Tensor, logprobs: torch.Tensor
) -> tuple[TokenLogprob, ...]:
    """The sequence alone, row by row (as the runner sampled drafted rows before)."""
    s = p.seq
    params = s.sampling
    drafts = p.drafts
    rows = range(p.row, p.row + len(drafts) + 1)
    probs = []
    for j, r in enumerate(rows):
        row = processed_logits(
            logits[r],
            params,
            s.prompt_token_ids,
            s.output_token_ids + drafts[:j],
            p.stop_ids,
            s.num_output_tokens + j,
        )
        if p.mask is not None and j < p.mask.bitmask.shape[0]:
            row = row.masked_fill(~p.mask.allowed(VOCAB)[j], float("-inf"))
        probs.append(sampling_probs(row, params))
    generator = s.generator
    if not drafts:
        tokens = [draw(probs[0], params, generator)]
    else:
        q = None if s.spec_probs is None else s.spec_probs[: len(drafts)]
        tokens = verify_drafts(torch.stack(probs), list(drafts), q, params, generator)
    top = params.logprobs or 0
    return tuple(
        TokenLogprob(t, float(logprobs[r, t]), top_logprobs(logprobs[r], top))
        for t, r in zip(tokens, rows, strict=False)
    )


def fresh(seqs: list[PendingSeq]) -> list[PendingSeq]:
    """The same sequences with their generators back at their seeds."""
    out = []
    for p in seqs:
        gen = torch.Generator().manual_seed(1000 + p.seq.seq_id)
        out.append(PendingSeq(replace(p.seq, generator=gen), p.row, p.stop_ids, p.mask))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_step_gives_each_sequence_what_the_per_row_path_gives_it(seed: int) -> None:
    rng = random.Random(seed)
    pieces: list[torch.Tensor] = []
    seqs = random_step(rng, pieces)
    logits = torch.cat(pieces)
    logprobs = logits.log_softmax(-1)
    want = [reference(p, logits, logprobs) for p in fresh(seqs)]
    got = sample_seqs(fresh(seqs), logits, logprobs, torch.Generator().manual_seed(0))
    assert got == want


def test_the_tests_cover_acceptance_rejection_and_grammars() -> None:
    accepted = rejected = constrained = 0
    for seed in range(40):
        pieces: list[torch.Tensor] = []
        seqs = random_step(random.Random(seed), pieces)
        logits = torch.cat(pieces)
        out = sample_seqs(fresh(seqs), logits, logits.log_softmax(-1), None)
        for p, entries in zip(seqs, out, strict=True):
            n = len(entries) - 1
            accepted += n > 0 and not p.seq.sampling.greedy
            rejected += n < len(p.drafts) and not p.seq.sampling.greedy
            constrained += p.mask is not None and bool(p.drafts)
    assert accepted > 5 and rejected > 5 and constrained > 3


def test_beam_candidates_equal_processed_log_probabilities_row_by_row() -> None:
    rng = random.Random(3)
    logprobs = (torch.randn(7, VOCAB) * 3).log_softmax(-1)
    seqs = []
    for i, params in enumerate(PARAMS[:6]):
        outputs = tuple(rng.randrange(VOCAB) for _ in range(i))
        s = ScheduledSeq(
            seq_id=i,
            request_id=f"b{i}",
            token_ids=(1,),
            start_pos=0,
            block_table=(),
            sample=True,
            sampling=params,
            prompt_token_ids=(5, 6, 7),
            output_token_ids=outputs,
            num_output_tokens=len(outputs),
            beam_topk=rng.choice([2, 4, 6]),
        )
        seqs.append(PendingSeq(s, i + (i > 2), STOPS))
    got = beam_candidates(seqs, logprobs)
    for p, candidates in zip(seqs, got, strict=True):
        s = p.seq
        row = processed_logits(
            logprobs[p.row],
            s.sampling,
            s.prompt_token_ids,
            s.output_token_ids,
            p.stop_ids,
            s.num_output_tokens,
        )
        assert candidates == top_logprobs(row, s.beam_topk)
