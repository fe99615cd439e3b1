"""A replica paces its streams to a message budget (router/replica_stream.py MessageBudget):
a busy replica sends fewer messages in total, a lone stream keeps its low latency, and the
first and the last tokens are never held back; alike for AsyncEngine's streams (async
iterators) and ProcessEngine's (DeltaFeeds)."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from router.replica_stream import MessageBudget, replica_stream
from workers.delta_feed import DeltaFeed
from workers.delta_streams import DeltaStream, deliver
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams

STEP_S = 0.002  # the fake engine makes one token per stream every 2 ms
KINDS = ("iterator", "feed")


class FakeEngine:
    """One token per stream every STEP_S; `kind`: its streams are async iterators (as
    AsyncEngine's) or DeltaFeeds fed through `deliver` (as ProcessEngine's)."""

    def __init__(self, tokens: int, kind: str = "iterator") -> None:
        self.tokens = tokens
        self.kind = kind
        self.first_token_at: dict[str, float] = {}
        self.last_token_at: dict[str, float] = {}
        self.streams: dict[str, DeltaStream] = {}
        self.aborted: list[str] = []

    async def open(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]:
        if self.kind == "iterator":
            return self._deltas(spec)
        stream = DeltaStream(asyncio.get_running_loop(), spec.sampling.n)
        self.streams[spec.request_id] = stream
        asyncio.get_running_loop().create_task(self._deliver(spec))
        return DeltaFeed(stream, spec.request_id, self.streams, self.abort)

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def _delta(self, spec: GenerateRequest, i: int) -> TokenDelta:
        now = asyncio.get_running_loop().time()
        self.first_token_at.setdefault(spec.request_id, now)
        self.last_token_at[spec.request_id] = now
        last = FinishReason.LENGTH if i == self.tokens - 1 else None
        return TokenDelta(spec.request_id, 0, (i,), finish_reason=last)

    async def _deltas(self, spec: GenerateRequest) -> AsyncIterator[TokenDelta]:
        for i in range(self.tokens):
            await asyncio.sleep(STEP_S)
            yield self._delta(spec, i)

    async def _deliver(self, spec: GenerateRequest) -> None:
        for i in range(self.tokens):
            await asyncio.sleep(STEP_S)
            deliver(self.streams, [spec.request_id], [self._delta(spec, i)])


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


def run_streams(
    count: int, tokens: int, kind: str
) -> tuple[list[list[tuple[float, int]]], FakeEngine]:
    async def main() -> tuple[list[list[tuple[float, int]]], FakeEngine]:
        engine = FakeEngine(tokens, kind)
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


@pytest.mark.parametrize("kind", KINDS)
def test_a_busy_replica_sends_fewer_messages_per_stream_than_a_lone_stream(kind: str) -> None:
    (lone,), _ = run_streams(1, tokens=300, kind=kind)
    busy, _ = run_streams(60, tokens=300, kind=kind)
    assert sum(n for _, n in lone) == 300 and all(sum(n for _, n in s) == 300 for s in busy)
    # a lone stream settles to 20 ms batches; 60 streams to 60 ms each (1000 a second in all)
    assert 0.018 <= settled_gap(lone) <= 0.04
    assert statistics.median(settled_gap(s) for s in busy) >= 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_busy_streams_get_their_first_tokens_at_once_and_their_last_without_waiting(
    kind: str,
) -> None:
    streams, engine = run_streams(60, tokens=150, kind=kind)
    late = []
    for i, stream in enumerate(streams):
        first_at, _ = stream[0]
        assert first_at - engine.first_token_at[f"r{i}"] < 0.03  # not a 60 ms interval
        late.append(stream[-1][0] - engine.last_token_at[f"r{i}"])
    assert max(late) < 0.02  # the final batch is not held for the rest of an interval
