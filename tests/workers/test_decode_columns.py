"""Running plain greedy decodes sent as columns (RunningDecodes) give the engine exactly the
deltas of sending them as ScheduledSeqs: same tokens, stops, logprobs of the requests that
ask for them, in the same order, with preemptions, prefix hits, async steps, min_tokens,
sampled and forked requests mixed in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.factories import make_engine
from workers.engine import LLMEngine
from workers.kv_cache.table_changes import BlockUpdate
from workers.protocol import GenerateRequest, TokenDelta, TokenLogprob
from workers.running_decodes import DecodeColumns, RunningDecodes
from workers.sampling_params import SamplingParams


def test_columns_select_and_index() -> None:
    columns = DecodeColumns()
    columns.add(7, "a", 11, 3, None, None)
    columns.add(9, "b", 12, 5, "lora", BlockUpdate(1, (4,)))
    columns.add(4, "c", 13, 8, None, None)
    decodes = columns.build()
    assert decodes is not None and len(decodes) == 3
    assert decodes.index == {7: 0, 9: 1, 4: 2}
    assert decodes.adapters() == [None, "lora", None]
    picked = decodes.select([1, 2])
    assert picked.seq_ids == (9, 4) and picked.token_ids == (12, 13)
    assert picked.positions == (5, 8) and picked.request_ids == ("b", "c")
    assert picked.blocks == ((9, BlockUpdate(1, (4,))),)
    assert decodes.select([0]).blocks == ()
    assert DecodeColumns().build() is None
    with pytest.raises(ValueError):
        RunningDecodes((1, 2), ("a",), (3, 4), (0, 0))


def workload() -> list[GenerateRequest]:
    g = torch.Generator().manual_seed(5)
    shared = torch.randint(3, 100, (9,), generator=g).tolist()

    def prompt(n: int) -> tuple[int, ...]:
        return tuple(shared[: n % 9] + torch.randint(3, 100, (n,), generator=g).tolist())

    specs = []
    for i in range(14):
        kind = i % 7
        if kind == 0:
            params = SamplingParams(max_tokens=9, temperature=0.8, seed=i)
        elif kind == 1:
            params = SamplingParams(max_tokens=7, temperature=0, logprobs=2)
        elif kind == 2:
            params = SamplingParams(max_tokens=8, temperature=0, min_tokens=5)
        elif kind == 3:
            params = SamplingParams(max_tokens=6, n=2, temperature=0.7, seed=i)
        else:
            params = SamplingParams(max_tokens=5 + i, temperature=0)
        specs.append(GenerateRequest(f"r{i}", prompt(3 + i), params))
    return specs


def run(engine: LLMEngine, columns: bool) -> list[list[TokenDelta]]:
    engine.scheduler.decode_columns = columns
    steps: list[list[TokenDelta]] = []
    specs = workload()
    for spec in specs[:8]:
        engine.add_request(spec)
    late = specs[8:]
    while engine.has_unfinished() or late:
        if late and len(steps) % 3 == 2:
            engine.add_request(late.pop(0))
        steps.append(engine.step())
    return steps


def exact(delta: TokenDelta) -> TokenDelta:
    """The delta without its log-probabilities' values (their token ids kept)."""
    entries = delta.logprobs
    if entries is None:
        return delta
    ids = tuple(TokenLogprob(e.token_id, None, tuple((t, 0.0) for t, _ in e.top)) for e in entries)
    return replace(delta, logprobs=ids)


def logprobs(steps: list[list[TokenDelta]]) -> list[float]:
    values: list[float] = []
    for step in steps:
        for delta in step:
            for e in delta.logprobs or ():
                values += [e.logprob or 0.0, *(v for _, v in e.top)]
    return values


@pytest.mark.parametrize("async_scheduling", [False, True])
@pytest.mark.parametrize("num_blocks", [24, 256])  # 24: preemptions
def test_columns_give_the_deltas_of_scheduled_seqs(
    llama_dir: Path, async_scheduling: bool, num_blocks: int
) -> None:
    kwargs = dict(num_blocks=num_blocks, max_num_seqs=8, async_scheduling=async_scheduling)
    with_columns = make_engine(llama_dir, **kwargs)
    assert with_columns.scheduler.decode_columns
    columns = run(with_columns, True)
    objects = run(make_engine(llama_dir, **kwargs), False)
    assert [[exact(d) for d in step] for step in columns] == [
        [exact(d) for d in step] for step in objects
    ]
    for a, b in zip(logprobs(columns), logprobs(objects), strict=True):
        # the rows sit elsewhere in the batch: equal up to float32 rounding
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert with_columns.kv.pool.num_free_blocks == num_blocks
    if num_blocks == 24:
        assert with_columns.scheduler.num_preemptions > 0


def test_a_step_of_columns_alone_runs_on_columns(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    for i in range(3):
        params = SamplingParams(max_tokens=6, temperature=0)
        engine.add_request(GenerateRequest(f"r{i}", (5 + i, 6, 7), params))
    engine.step()  # the prefills
    step = engine.scheduler.schedule()
    assert not step.seqs and step.num_decodes == 3 and step.num_tokens == 3
    assert step.overlappable
    output = engine.runner.execute(step)
    assert not output.sampled and len(output.decoded) == 3  # the columns' tokens, no entries
    deltas = engine.scheduler.update_from_output(step, output)
    assert [len(d.token_ids) for d in deltas] == [1, 1, 1]
