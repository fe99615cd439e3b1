"""AsyncEngine: streams per request, concurrent requests, abort on early exit, dead loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.factories import hf_greedy, make_engine, random_prompts
from workers.async_engine import AsyncEngine
from workers.errors import EngineDeadError
from workers.protocol import FinishReason, GenerateRequest
from workers.sampling_params import SamplingParams


@pytest.fixture
def async_engine(llama_dir: Path):
    engine = AsyncEngine(make_engine(llama_dir, block_size=4))
    yield engine
    engine.shutdown()


async def collect(engine: AsyncEngine, spec: GenerateRequest) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    async for delta in engine.add_request(spec):
        out.setdefault(delta.index, []).extend(delta.token_ids)
    return out


def test_concurrent_streams_equal_transformers(async_engine: AsyncEngine, llama_hf) -> None:
    prompts = random_prompts([5, 9, 17, 12])
    greedy = SamplingParams(max_tokens=10, temperature=0)

    async def main() -> list[dict[int, list[int]]]:
        return await asyncio.gather(
            *(
                collect(async_engine, GenerateRequest(f"r{i}", tuple(p), greedy))
                for i, p in enumerate(prompts)
            )
        )

    results = asyncio.run(main())
    for prompt, result in zip(prompts, results, strict=True):
        assert result == {0: hf_greedy(llama_hf, prompt, 10)}


def test_aborts_while_a_step_is_in_flight_lose_nothing(llama_dir: Path, llama_hf) -> None:
    """Async scheduling on the engine thread: requests aborted between steps (one step
    queued ahead) end with ABORT, the others still equal transformers, and every block
    comes back."""
    engine = AsyncEngine(make_engine(llama_dir, block_size=4, async_scheduling=True))
    prompts = random_prompts([5, 9, 17, 12, 7, 21])
    greedy = SamplingParams(max_tokens=24, temperature=0)

    async def stream(i: int, prompt: list[int]) -> tuple[list[int], FinishReason | None]:
        tokens: list[int] = []
        reason = None
        async for delta in engine.add_request(GenerateRequest(f"r{i}", tuple(prompt), greedy)):
            tokens += delta.token_ids
            reason = delta.finish_reason
            if i % 2 and len(tokens) >= 3 and reason is None:
                engine.abort(f"r{i}")
        return tokens, reason

    async def main() -> list[tuple[list[int], FinishReason | None]]:
        return await asyncio.gather(*(stream(i, p) for i, p in enumerate(prompts)))

    try:
        results = asyncio.run(main())
        for i, (prompt, (tokens, reason)) in enumerate(zip(prompts, results, strict=True)):
            reference = hf_greedy(llama_hf, prompt, 24)
            if i % 2:
                assert reason == FinishReason.ABORT and tokens == reference[: len(tokens)]
            else:
                assert reason in (FinishReason.LENGTH, FinishReason.STOP) and tokens == reference
        stats = engine.stats()
        assert stats.num_running == 0 and stats.num_free_blocks == stats.num_total_blocks
    finally:
        engine.shutdown()


def test_n_samples_stream_until_all_finish(async_engine: AsyncEngine) -> None:
    spec = GenerateRequest(
        "n", (5, 6, 7), SamplingParams(max_tokens=6, n=3, seed=1, ignore_eos=True)
    )
    result = asyncio.run(collect(async_engine, spec))
    assert sorted(result) == [0, 1, 2]
    assert all(len(tokens) == 6 for tokens in result.values())


def test_leaving_a_stream_early_aborts_and_frees_blocks(async_engine: AsyncEngine) -> None:
    spec = GenerateRequest(
        "long", tuple(range(3, 30)), SamplingParams(max_tokens=200, ignore_eos=True)
    )

    async def main() -> None:
        stream = async_engine.add_request(spec)
        async for _ in stream:
            break
        await stream.aclose()
        for _ in range(100):
            stats = async_engine.stats()
            if stats.num_running == 0 and stats.num_free_blocks == stats.num_total_blocks:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"blocks not returned: {async_engine.stats()}")

    asyncio.run(main())


def test_abort_ends_the_stream_with_abort(async_engine: AsyncEngine) -> None:
    spec = GenerateRequest(
        "a", tuple(range(3, 20)), SamplingParams(max_tokens=500, ignore_eos=True)
    )

    async def main() -> list:
        deltas = []
        async for delta in async_engine.add_request(spec):
            deltas.append(delta)
            if len(deltas) == 2:
                async_engine.abort("a")
        return deltas

    deltas = asyncio.run(main())
    assert deltas[-1].finish_reason == FinishReason.ABORT
    assert sum(len(d.token_ids) for d in deltas) < 500


def test_bad_request_raises_at_once_and_others_continue(async_engine: AsyncEngine) -> None:
    async def main() -> dict[int, list[int]]:
        with pytest.raises(ValueError, match="the prompt is empty"):
            async_engine.add_request(GenerateRequest("bad", (), SamplingParams()))
        return await collect(
            async_engine,
            GenerateRequest("ok", (5, 6), SamplingParams(max_tokens=3, ignore_eos=True)),
        )

    assert len(asyncio.run(main())[0]) == 3


def test_dead_loop_fails_streams_and_reports_unhealthy(llama_dir: Path) -> None:
    engine = AsyncEngine(make_engine(llama_dir))

    def broken_step():
        raise RuntimeError("CUDA error: device lost")

    engine.engine.step = broken_step  # type: ignore[method-assign]

    async def main() -> None:
        with pytest.raises(EngineDeadError, match="engine stopped on an internal error"):
            await collect(engine, GenerateRequest("x", (5, 6), SamplingParams()))

    asyncio.run(main())
    assert not engine.is_alive
    with pytest.raises(EngineDeadError):
        asyncio.run(collect(engine, GenerateRequest("y", (5,), SamplingParams())))


def test_a_replica_stream_closed_at_acceptance_aborts_and_frees_blocks(
    async_engine: AsyncEngine,
) -> None:
    """The Router's caller left between the replica's acceptance and its first batch: the
    request must not generate on for nobody, and its stream must not stay behind."""
    from router.replica_stream import replica_stream

    spec = GenerateRequest(
        "gone", tuple(range(3, 30)), SamplingParams(max_tokens=200, ignore_eos=True)
    )

    async def main() -> None:
        stream = replica_stream(async_engine, spec)
        assert await anext(stream) == []
        await stream.aclose()
        for _ in range(100):
            stats = async_engine.stats()
            idle = stats.num_running == stats.num_waiting == 0
            gone = "gone" not in async_engine._streams  # only its abort removes it
            if gone and idle and stats.num_free_blocks == stats.num_total_blocks:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the request went on: {async_engine.stats()}")

    asyncio.run(main())
