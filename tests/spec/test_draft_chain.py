"""The draft model's rounds: greedy drafts (a catch-up step, then steps chained on the device)
are the draft model's own greedy continuation per transformers, round after round, whatever
the verifier kept; sampled drafts beside them keep their distributions; every KV block comes
back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import load_hf
from workers.sampling_params import SamplingParams
from workers.spec.draft_chain import chain_rows
from workers.spec.draft_model import DraftModelProposer
from workers.spec.proposers import DraftQuery

GREEDY = SamplingParams(max_tokens=64, temperature=0)
SAMPLED = SamplingParams(max_tokens=64, temperature=0.8, seed=3)
NUM_BLOCKS = 96


@pytest.fixture(scope="module")
def draft_hf(draft_dir: Path) -> Any:
    return load_hf(draft_dir)


def continuation(hf: Any, tokens: list[int], k: int) -> list[int]:
    """transformers' greedy next k tokens after `tokens` (a full forward per token)."""
    ids = list(tokens)
    with torch.no_grad():
        for _ in range(k):
            ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(tokens) :]


def query(key: str, tokens: list[int], k: int, prompt: int, sampling=GREEDY) -> DraftQuery:
    return DraftQuery(key, tuple(tokens), prompt, k, sampling, seed=sampling.seed)


def test_chain_rows_lay_out_positions_slots_and_lengths() -> None:
    # Sequence 0 chains 3 steps from position 3 across a block boundary (block size 4);
    # sequence 1 chains none (k = 1); sequence 2 stops after one step.
    rows = chain_rows([3, 2, 8], [3, 0, 1], [[7, 8], [3], [1, 2, 5]], 4, scratch_slot=99)
    assert rows.positions.tolist() == [[3, 2, 8], [4, 2, 8], [5, 2, 8]]
    assert rows.slots.tolist() == [[31, 99, 20], [32, 99, 99], [33, 99, 99]]
    assert rows.seq_lens.tolist() == [[4, 2, 9], [5, 2, 8], [6, 2, 8]]
    assert rows.active.tolist() == [[True, False, True], [True, False, False], [True] + [False] * 2]
    assert rows.block_tables.tolist() == [[7, 8, 0], [3, 0, 0], [1, 2, 5]]
    assert chain_rows([4], [0], [[1]], 4, 99).num_steps == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_greedy_rounds_are_the_draft_models_continuation(
    draft_dir: Path, draft_hf: Any, data: st.DataObject
) -> None:
    proposer = DraftModelProposer(draft_dir, torch.float32, torch.device("cpu"), NUM_BLOCKS, 4)
    num = data.draw(st.integers(1, 4), label="requests")
    lengths = data.draw(st.lists(st.integers(1, 13), min_size=num, max_size=num))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    tokens = {f"r{i}": rng.integers(3, 128, n).tolist() for i, n in enumerate(lengths)}
    prompts = {key: len(ids) for key, ids in tokens.items()}
    for _ in range(data.draw(st.integers(1, 4), label="rounds")):
        ks = {key: data.draw(st.integers(1, 5), label="k") for key in tokens}
        queries = [query(key, tokens[key], ks[key], prompts[key]) for key in tokens]
        proposals = proposer.propose(queries)
        for q, proposal in zip(queries, proposals, strict=True):
            assert proposal is not None and proposal.probs is None
            assert list(proposal.token_ids) == continuation(draft_hf, list(q.token_ids), q.k)
            # The verifier keeps a prefix and adds a token of its own (rejection or bonus).
            kept = data.draw(st.integers(0, q.k), label="kept")
            tokens[q.key] += [*proposal.token_ids[:kept], int(rng.integers(3, 128))]
    for key in tokens:
        proposer.release(key)
    assert proposer.kv.pool.num_free_blocks == NUM_BLOCKS


def test_greedy_and_sampled_drafts_in_one_round(draft_dir: Path, draft_hf: Any) -> None:
    proposer = DraftModelProposer(draft_dir, torch.float32, torch.device("cpu"), NUM_BLOCKS, 4)
    prompt_a, prompt_b = [5, 9, 14, 3, 77], [8, 8, 21]
    queries = [query("a", prompt_a, 4, 5), query("b", prompt_b, 3, 3, SAMPLED)]
    greedy, sampled = proposer.propose(queries)
    assert greedy is not None and list(greedy.token_ids) == continuation(draft_hf, prompt_a, 4)
    assert sampled is not None and len(sampled.token_ids) == 3
    assert sampled.probs is not None and sampled.probs.shape == (3, 128)
    assert torch.allclose(sampled.probs.sum(-1), torch.ones(3))
    # A greedy request the pool cannot hold a whole round for drafts step by step instead.
    tight = DraftModelProposer(draft_dir, torch.float32, torch.device("cpu"), 2, 4)
    (proposal,) = tight.propose([query("c", prompt_a, 4, 5)])  # 5 + 3 slots: 2 blocks
    assert proposal is not None and list(proposal.token_ids) == continuation(draft_hf, prompt_a, 4)
    (proposal,) = tight.propose([query("d", [*prompt_a, 1, 2, 3], 4, 8)])  # evicts "c"
    assert proposal is not None and len(proposal.token_ids) < 4
    assert (
        proposal.token_ids
        == tuple(continuation(draft_hf, [*prompt_a, 1, 2, 3], 4))[: len(proposal.token_ids)]
    )
