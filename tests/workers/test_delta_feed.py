"""DeltaFeed (workers/delta_feed.py), what ProcessEngine.open hands out: whatever the engine
delivered comes out once and in order, taken in batches or one by one; an error comes after
the deltas before it; the feed leaves the engine's streams when the request finished, and
aborts it when closed (or dropped) before that; `end` wakes on the last delta alone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.delta_feed import DeltaFeed
from workers.delta_streams import DeltaStream, deliver
from workers.protocol import FinishReason, TokenDelta


class Engine:
    """The engine's side: its streams (where deliver finds them) and the aborts made."""

    def __init__(self) -> None:
        self.streams: dict[str, DeltaStream] = {}
        self.aborted: list[str] = []

    def open(self, request_id: str, num_samples: int = 1) -> DeltaFeed:
        stream = DeltaStream(asyncio.get_running_loop(), num_samples)
        self.streams[request_id] = stream
        return DeltaFeed(stream, request_id, self.streams, self.aborted.append)


def delta(request_id: str, token: int, index: int = 0, last: bool = False) -> TokenDelta:
    reason = FinishReason.LENGTH if last else None
    return TokenDelta(request_id, index, (token,), finish_reason=reason)


def run(body: Callable[[Engine], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await body(Engine())

    return asyncio.run(main())


# one request's deliveries, step by step: how many deltas each step brings, and whether the
# consumer takes what is pending after that step
STEPS = st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, num_samples=st.integers(1, 3))
def test_batches_taken_at_any_moment_are_the_deltas_in_order(
    steps: list[tuple[int, bool]], num_samples: int
) -> None:
    async def body(engine: Engine) -> None:
        feed = engine.open("r", num_samples)
        sent: list[TokenDelta] = []
        taken: list[TokenDelta] = []
        for count, take in steps:
            for _ in range(count):
                sent.append(delta("r", len(sent), index=len(sent) % num_samples))
            deliver(engine.streams, ["r"] * count, sent[len(sent) - count :])
            if take:
                taken += feed.take()
        finals = [delta("r", -1, index=i, last=True) for i in range(num_samples)]
        deliver(engine.streams, ["other"] + ["r"] * num_samples, [finals[0], *finals])
        assert feed.ended
        taken += feed.take()
        assert taken == sent + finals
        assert feed.finished and engine.streams == {} and engine.aborted == []
        assert feed.take() == []

    run(body)


def test_iterating_one_by_one_gives_the_same_deltas_and_ends_with_the_request() -> None:
    async def body(engine: Engine) -> list[TokenDelta]:
        feed = engine.open("r")

        async def produce() -> None:
            for i in range(5):
                await asyncio.sleep(0.001)
                deliver(engine.streams, ["r"], [delta("r", i, last=i == 4)])

        producer = asyncio.create_task(produce())
        got = [d async for d in feed]
        await producer
        assert engine.streams == {} and engine.aborted == []
        return got

    assert [d.token_ids[0] for d in run(body)] == [0, 1, 2, 3, 4]


def test_an_error_comes_after_the_deltas_before_it_and_aborts_the_request() -> None:
    async def body(engine: Engine) -> None:
        feed = engine.open("r")
        first, second = delta("r", 1), delta("r", 2)
        deliver(engine.streams, ["r", "r", "r"], [first, second, RuntimeError("it failed")])
        assert feed.ended
        assert feed.take() == [first, second]
        with pytest.raises(RuntimeError, match="it failed"):
            feed.take()
        assert engine.streams == {} and engine.aborted == ["r"]

        put = engine.open("p")  # the engine's death reaches a stream through put
        engine.streams["p"].put(RuntimeError("engine died"))
        with pytest.raises(RuntimeError, match="engine died"):
            await anext(put)

    run(body)


def test_closing_or_dropping_an_unfinished_feed_aborts_it_once() -> None:
    async def body(engine: Engine) -> None:
        feed = engine.open("closed")
        deliver(engine.streams, ["closed"], [delta("closed", 1)])
        await feed.aclose()
        await feed.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(feed)

        done = engine.open("done")
        deliver(engine.streams, ["done"], [delta("done", 1, last=True)])
        assert len(done.take()) == 1
        await done.aclose()  # finished: nothing to abort

        engine.open("dropped")  # never read, never closed
        gc.collect()
        await asyncio.sleep(0)
        assert engine.aborted == ["closed", "dropped"] and engine.streams == {}

    run(body)


def test_end_wakes_on_the_last_delta_not_on_others_and_keeps_its_timeout() -> None:
    async def body(engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        feed = engine.open("r", num_samples=2)
        start = loop.time()
        await feed.end(0.05)  # nothing comes: the timeout
        assert loop.time() - start >= 0.045

        waiting = asyncio.create_task(feed.end(10.0))
        await asyncio.sleep(0.01)
        deliver(engine.streams, ["r"], [delta("r", 1)])
        deliver(engine.streams, ["r"], [delta("r", 2, index=0, last=True)])  # one of two
        await asyncio.sleep(0.01)
        assert not waiting.done()
        deliver(engine.streams, ["r"], [delta("r", 3, index=1, last=True)])
        await asyncio.wait_for(waiting, 0.5)
        assert len(feed.take()) == 3 and feed.finished

    run(body)


def test_a_cancelled_wait_leaves_the_stream_usable() -> None:
    async def body(engine: Engine) -> None:
        feed = engine.open("r")
        for wait in (feed.arrival(), feed.end(10.0)):
            task = asyncio.ensure_future(wait)
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        deliver(engine.streams, ["r"], [delta("r", 1, last=True)])  # wakes nothing cancelled
        await feed.arrival()
        assert [d.token_ids for d in feed.take()] == [(1,)]

    run(body)
