"""The replica stream: its wire form (what `pack` makes, `unpack` gives back unchanged), and
over ProcessEngine's streams (DeltaFeed): the deltas in order, an abort when the stream is
closed before the request finished, a caller's abort flushed at once, errors raised."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from router.replica_stream import FIELDS, MessageBudget, pack, replica_stream, unpack
from workers.delta_feed import DeltaFeed
from workers.delta_streams import DeltaStream, deliver
from workers.errors import EngineDeadError
from workers.protocol import FinishReason, GenerateRequest, TokenDelta, TokenLogprob
from workers.sampling_params import SamplingParams


def test_a_packed_batch_unpacks_to_equal_deltas() -> None:
    batch = [
        TokenDelta("cmpl-1", 0, (5, 6), num_prompt_tokens=3, num_generated_tokens=2),
        TokenDelta(
            "cmpl-1",
            1,
            (7,),
            logprobs=(TokenLogprob(7, -0.5, ((7, -0.5), (8, -1.25))),),
            finish_reason=FinishReason.LENGTH,
            num_cached_tokens=2,
            num_drafted_tokens=4,
            num_accepted_tokens=3,
        ),
    ]
    data = pack(batch)
    assert isinstance(data, bytes)
    restored = unpack(data)
    assert restored == batch
    assert restored[1].finish_reason is FinishReason.LENGTH


def test_the_acceptance_marker_survives_packing() -> None:
    assert unpack(pack([])) == []


def test_a_batch_from_a_replica_with_its_fields_in_another_order_reads_by_name() -> None:
    delta = TokenDelta("cmpl-1", 0, (5,), finish_reason=FinishReason.STOP, num_prompt_tokens=3)
    names = tuple(reversed(FIELDS))
    data = pickle.dumps((names, [tuple(getattr(delta, n) for n in names)]), protocol=5)
    assert unpack(data) == [delta]


class CoreLike:
    """ProcessEngine's side of its streams, the core in the test's hands: `open` hands out a
    DeltaFeed once accepted; an abort, as the core's, ends the stream with an ABORT delta."""

    def __init__(self) -> None:
        self.streams: dict[str, DeltaStream] = {}
        self.aborted: list[str] = []

    async def open(self, spec: GenerateRequest) -> DeltaFeed:
        stream = DeltaStream(asyncio.get_running_loop(), spec.sampling.n)
        self.streams[spec.request_id] = stream
        return DeltaFeed(stream, spec.request_id, self.streams, self.abort)

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        aborted: list[TokenDelta | BaseException] = [
            TokenDelta(request_id, 0, (), finish_reason=FinishReason.ABORT)
        ]
        asyncio.get_running_loop().call_soon(self.step, aborted)

    def step(self, deltas: list[TokenDelta | BaseException], request_id: str = "r") -> None:
        deliver(self.streams, [request_id] * len(deltas), deltas)


def spec() -> GenerateRequest:
    return GenerateRequest("r", (1, 2, 3), SamplingParams(max_tokens=100))


def test_a_feed_streams_its_deltas_in_order_and_the_finished_request_is_not_aborted() -> None:
    async def main() -> None:
        core = CoreLike()
        stream = replica_stream(core, spec(), MessageBudget(min_interval_s=0.01))
        assert await anext(stream) == []
        sent = [TokenDelta("r", 0, (i,)) for i in range(20)]
        sent.append(TokenDelta("r", 0, (), finish_reason=FinishReason.STOP))

        async def steps() -> None:
            for i in range(0, len(sent), 3):
                core.step(list(sent[i : i + 3]))
                await asyncio.sleep(0.004)

        stepping = asyncio.create_task(steps())
        batches = [b async for b in stream]
        await stepping
        assert [d for b in batches for d in b] == sent
        assert 1 < len(batches) < len(sent)
        assert core.streams == {} and core.aborted == []

    asyncio.run(main())


def test_closing_the_stream_at_acceptance_or_later_aborts_the_request() -> None:
    async def main() -> list[str]:
        core = CoreLike()
        accepted = replica_stream(core, spec())
        assert await anext(accepted) == []
        await accepted.aclose()  # the Router's caller left before any token
        core.step([TokenDelta("r", 0, (1,))])
        assert core.aborted == ["r"] and core.streams == {}

        streaming = replica_stream(core, spec())
        await anext(streaming)
        core.step([TokenDelta("r", 0, (1,))])
        assert [d.token_ids for d in await anext(streaming)] == [(1,)]
        await streaming.aclose()
        return core.aborted

    assert asyncio.run(main()) == ["r", "r"]


def test_a_request_aborted_for_a_gone_caller_ends_at_once_with_what_it_made() -> None:
    """CallerWatch aborts the request of a caller that died: the stream's last batch (the
    ABORT delta) goes without waiting for the interval, and the stream ends."""

    async def main() -> tuple[float, list[TokenDelta]]:
        loop = asyncio.get_running_loop()
        core = CoreLike()
        stream = replica_stream(core, spec(), MessageBudget(min_interval_s=1.0))
        await anext(stream)
        for i in range(3):  # past the ramp: the next batch would wait about a second
            core.step([TokenDelta("r", 0, (i,))])
            await anext(stream)
        core.step([TokenDelta("r", 0, (9,))])
        start = loop.time()
        core.abort("r")  # what CallerWatch calls
        rest = [d async for b in stream for d in b]
        return loop.time() - start, rest

    took, rest = asyncio.run(main())
    assert took < 0.2
    assert [d.token_ids for d in rest] == [(9,), ()] and rest[
        -1
    ].finish_reason is FinishReason.ABORT


def test_an_engine_error_is_raised_after_the_deltas_before_it() -> None:
    async def main(seen: list[TokenDelta]) -> None:
        core = CoreLike()
        stream = replica_stream(core, spec(), MessageBudget(min_interval_s=0.5))
        await anext(stream)
        core.step([TokenDelta("r", 0, (1,))])
        seen += await anext(stream)
        core.step([TokenDelta("r", 0, (2,)), EngineDeadError("the engine died")])
        async for batch in stream:
            seen += batch

    seen: list[TokenDelta] = []
    with pytest.raises(EngineDeadError, match="the engine died"):
        asyncio.run(main(seen))
    assert [d.token_ids for d in seen] == [(1,), (2,)]
