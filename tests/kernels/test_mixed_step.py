"""A mixed step (prompts, chunks after cached context, decodes, a chunk that does not
sample) laid out as a mixed CUDA graph reads it (workers/mixed_rows.py: padded to an
(N tokens, S sequences) shape, tiled prefill attention, logits of the sample rows only)
gives the eager step's logits. On CPU the graph's forward runs eagerly through Triton's
interpreter (TRITON_INTERPRET=1), float32; no graph is captured here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.factories import make_tiny_model
from workers.attention.reference import ReferenceAttention
from workers.mixed_graphs import mixed_shapes
from workers.mixed_rows import (
    MixedLayout,
    fill_mixed,
    host_views,
    mixed_forward,
    mixed_rows,
    model_tile_queries,
    sampled_logits,
    smallest_shape,
)
from workers.model_runner import ModelRunner
from workers.models.loader import load_model
from workers.models.model_config import ModelConfig
from workers.running_decodes import RunningDecodes
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ScheduledSeq

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # set before triton is imported
pytestmark = pytest.mark.gpu
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
from workers.attention.triton_kv import write_kv_paged  # noqa: E402
from workers.attention.triton_prefill import paged_prefill_attention_tiled  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BS, NUM_BLOCKS = 16, 60
SCRATCH = NUM_BLOCKS  # one block past those the tables use, as the runner's graphs keep


def seq(
    seq_id: int, tokens: list[int], start: int, table: list[int], sample: bool = True
) -> ScheduledSeq:
    return ScheduledSeq(
        seq_id=seq_id,
        request_id=str(seq_id),
        token_ids=tuple(tokens),
        start_pos=start,
        block_table=tuple(table),
        sample=sample,
        sampling=SamplingParams(temperature=0),
    )


def tables() -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(NUM_BLOCKS, generator=g).tolist()
    return [perm[i * 10 : (i + 1) * 10] for i in range(6)]  # 160 tokens each at most


@pytest.fixture(scope="module", params=["LlamaForCausalLM", "MistralForCausalLM"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = {"sliding_window": 24} if request.param == "MistralForCausalLM" else {}
    return make_tiny_model(tmp_path_factory.mktemp("mixed") / "m", request.param, **extra)


@pytest.mark.parametrize("columns", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_mixed_rows_forward_equals_eager_step(model_dir: Path, padded: bool, columns: bool) -> None:
    """columns: the decodes come as RunningDecodes (after the step's ScheduledSeqs)."""
    cfg = ModelConfig.from_dir(model_dir)
    scale = cfg.head_dim**-0.5
    eager_model = load_model(
        model_dir, ReferenceAttention(scale, cfg.sliding_window), torch.float32, DEVICE
    )
    tiled = ReferenceAttention(
        scale,
        cfg.sliding_window,
        write_fn=write_kv_paged,
        tiled_fn=paged_prefill_attention_tiled,
    )
    graph_model = load_model(model_dir, tiled, torch.float32, DEVICE)
    runner = ModelRunner(eager_model, NUM_BLOCKS + 1, BS, torch.float32, DEVICE)
    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(3, cfg.vocab_size, (n,), generator=g).tolist()

    t = tables()
    prompts = {0: ids(40), 1: ids(100), 2: ids(5), 3: ids(70), 5: ids(20)}
    first = tuple(seq(i, p, 0, t[i]) for i, p in prompts.items())
    runner.forward_logits(first)  # cached context for the mixed step
    decode_ids = ids(2)
    step: tuple[ScheduledSeq, ...] = (
        seq(1, ids(30), 100, t[1]),  # a chunk after 100 cached tokens
        seq(4, ids(90), 0, t[4]),  # a new prompt
        seq(3, ids(10), 70, t[3], sample=False),  # a chunk that does not sample
        seq(5, ids(65), 20, t[5]),  # one tile and a row, after a short context
    )
    decodes = None
    if columns:
        decodes = RunningDecodes((0, 2), ("0", "2"), tuple(decode_ids), (40, 5))
    else:  # the decodes as ScheduledSeqs, between the others
        step = (
            step[0],
            seq(0, decode_ids[:1], 40, t[0]),
            *step[1:],
            seq(2, decode_ids[1:], 5, t[2]),
        )
    before = [c.clone() for c in runner.kv_caches]
    runner.batch.update(step)
    eager = runner._forward(step, decodes)
    rows = mixed_rows(runner.batch, step, BS, decodes=decodes)
    shapes = mixed_shapes(256, 16)
    shape = smallest_shape(shapes, rows.num_tokens, rows.num_seqs)
    if not padded:
        shape = (rows.num_tokens, rows.num_seqs)
    else:
        assert shape[0] > rows.num_tokens and shape[1] > rows.num_seqs
    per_tile = model_tile_queries(graph_model)
    layout = MixedLayout(256, 16, 10, per_tile)
    buffer = torch.full((layout.size,), 7, dtype=torch.long)  # stale values everywhere
    fill_mixed(host_views(layout.fields(buffer)), rows, shape, SCRATCH, BS, per_tile)
    fields = layout.fields(buffer.to(DEVICE))
    caches = [c.clone() for c in before]
    forward = mixed_forward(graph_model, caches, fields, shape, BS, per_tile)
    logits = sampled_logits(forward, rows)
    assert logits.shape == eager.shape == (5, cfg.vocab_size)
    torch.testing.assert_close(logits, eager, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(caches, runner.kv_caches, strict=True):  # same KV, bar scratch
        torch.testing.assert_close(ours[:, :NUM_BLOCKS], theirs[:, :NUM_BLOCKS])
