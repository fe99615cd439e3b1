"""A draft model's greedy rounds replayed as CUDA graphs (the catch-up step and the chained
one-token steps) propose what the eager CUDA path and the CPU path propose, round after
round, and give every KV block back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.factories import make_tiny_model, random_prompts
from workers.sampling_params import SamplingParams
from workers.spec.draft_model import DraftModelProposer
from workers.spec.proposers import DraftQuery

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

GREEDY = SamplingParams(max_tokens=64, temperature=0)


def test_cuda_draft_chain_graphs_equal_eager_and_cpu(tmp_path: Path) -> None:
    draft = make_tiny_model(tmp_path / "draft", seed=5, num_hidden_layers=2)
    proposers = [
        DraftModelProposer(draft, torch.float32, torch.device("cuda"), 64, 4, 8, graph_tokens=5),
        DraftModelProposer(draft, torch.float32, torch.device("cuda"), 64, 4),
        DraftModelProposer(draft, torch.float32, torch.device("cpu"), 64, 4),
    ]
    assert proposers[0].chain.graphs is not None and proposers[1].chain.graphs is None
    tokens = {f"r{i}": p for i, p in enumerate(random_prompts([3, 9, 14, 1, 6]))}
    for round_ in range(6):
        queries = [
            DraftQuery(key, tuple(ids), 1, 1 + (i + round_) % 4, GREEDY)
            for i, (key, ids) in enumerate(tokens.items())
        ]
        proposals = [p.propose(queries) for p in proposers]
        assert proposals[0] == proposals[1] == proposals[2]  # greedy: no distributions
        for i, (q, proposal) in enumerate(zip(queries, proposals[0], strict=True)):
            assert proposal is not None and len(proposal.token_ids) == q.k
            tokens[q.key] += [*proposal.token_ids[: (i + round_) % (q.k + 1)], 5 + i]
    for p in proposers:
        for key in tokens:
            p.release(key)
        assert p.kv.pool.num_free_blocks == 64
