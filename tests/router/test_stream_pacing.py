"""A replica paces its streams to a message budget (router/replica_stream.py MessageBudget):
a busy replica sends fewer messages in total, a lone stream keeps its low latency, and the
first and the last tokens are never held back."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from router.replica_stream import MessageBudget, replica_stream
from workers.protocol import GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams

STEP_S = 0.002  # the fake engine makes one token per stream every 2 ms


class FakeEngine:
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.first_token_at: dict[str, float] = {}
        self.last_token_at: dict[str, float] = {}

    async def open(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]:
        return self._deltas(spec)

    async def _deltas(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]:
        for i in range(self.tokens):
            await asyncio.sleep(STEP_S)
            now = asyncio.get_running_loop().time()
            self.first_token_at.setdefault(spec.request_id, now)
            self.last_token_at[spec.request_id] = now
            yield TokenDelta(spec.request_id, 0, (i,))


def request(i: int) -> GenerateRequest:
    return GenerateRequest(f"r{i}", (1, 2, 3), SamplingParams(max_tokens=8))


async def timed(engine: FakeEngine, i: int, budget: MessageBudget) -> list[tuple[float, int]]:
    """(arrival time, tokens) of each non-empty message of one stream."""
    loop = asyncio.get_running_loop()
    return [
        (loop.time(), sum(len(d.token_ids) for d in batch))
        async for batch in replica_stream(engine, request(i), budget)
        if batch
    ]


def test_the_interval_grows_with_the_replicas_streams_within_bounds() -> None:
    budget = MessageBudget(cost_s=0.001, min_interval_s=0.02, max_interval_s=0.1)
    assert budget.interval() == 0.02
    budget.streams = 32
    assert budget.interval() == pytest.approx(0.032)
    budget.streams = 256
    assert budget.interval() == 0.1
    budget.streams = 0
    with pytest.raises(RuntimeError), budget.stream(), budget.stream():
        assert budget.streams == 2
        raise RuntimeError("a stream that fails still gives its share back")
    assert budget.streams == 0


def run_streams(count: int, tokens: int) -> tuple[list[list[tuple[float, int]]], FakeEngine]:
    async def main() -> tuple[list[list[tuple[float, int]]], FakeEngine]:
        engine = FakeEngine(tokens)
        budget = MessageBudget()
        streams = await asyncio.gather(*(timed(engine, i, budget) for i in range(count)))
        assert budget.streams == 0
        return streams, engine

    return asyncio.run(main())


def settled_gap(stream: list[tuple[float, int]]) -> float:
    """The median spacing of a stream's messages once its ramp is over (past 150 ms)."""
    start = stream[0][0]
    gaps = [b - a for (a, _), (b, _) in pairwise(stream[:-1]) if a - start >= 0.15]
    return statistics.median(gaps)


def test_a_busy_replica_sends_fewer_messages_per_stream_than_a_lone_stream() -> None:
    (lone,), _ = run_streams(1, tokens=300)
    busy, _ = run_streams(60, tokens=300)
    assert sum(n for _, n in lone) == 300 and all(sum(n for _, n in s) == 300 for s in busy)
    # a lone stream settles to 20 ms batches; 60 streams to 60 ms each (1000 a second in all)
    assert 0.018 <= settled_gap(lone) <= 0.04
    assert statistics.median(settled_gap(s) for s in busy) >= 0.05


def test_busy_streams_get_their_first_tokens_at_once_and_their_last_without_waiting() -> None:
    streams, engine = run_streams(60, tokens=150)
    late = []
    for i, stream in enumerate(streams):
        first_at, _ = stream[0]
        assert first_at - engine.first_token_at[f"r{i}"] < 0.03  # not a 60 ms interval
        late.append(stream[-1][0] - engine.last_token_at[f"r{i}"])
    assert max(late) < 0.02  # the final batch is not held for the rest of an interval
