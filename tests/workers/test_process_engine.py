"""ProcessEngine: the engine in a process of its own, with AsyncEngine's streams — outputs
equal transformers / peft, bad requests refused at `open`, aborts return every block,
adapters load and unload across the socket, remote drafts are answered by the parent, and
a dead core fails every stream and reports unhealthy."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factories import engine_config, hf_greedy, random_prompts
from tests.lora_factories import lora_engine_config, peft_greedy
from workers.config import EngineConfig
from workers.errors import AdapterNotFoundError, EngineDeadError
from workers.process_engine import ProcessEngine
from workers.protocol import FinishReason, GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.proposers import DraftQuery, Proposal

GREEDY = SamplingParams(max_tokens=10, temperature=0)


def with_engine(
    config: EngineConfig,
    body: Callable[[ProcessEngine], Awaitable[Any]],
    remote_draft: Any = None,
) -> Any:
    async def main() -> Any:
        engine = ProcessEngine(config, remote_draft=remote_draft, start_timeout_s=120)
        try:
            return await body(engine)
        finally:
            engine.shutdown()

    return asyncio.run(main())


async def collect(engine: ProcessEngine, spec: GenerateRequest) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    async for delta in await engine.open(spec):
        out.setdefault(delta.index, []).extend(delta.token_ids)
    return out


async def all_blocks_back(engine: ProcessEngine) -> None:
    for _ in range(200):
        s = engine.stats()
        if s.num_running == s.num_waiting == 0 and s.num_free_blocks == s.num_total_blocks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"blocks not returned: {engine.stats()}")


def test_concurrent_streams_equal_transformers(llama_dir: Path, llama_hf) -> None:
    prompts = random_prompts([5, 9, 17, 12])

    async def body(engine: ProcessEngine) -> list[dict[int, list[int]]]:
        specs = [GenerateRequest(f"r{i}", tuple(p), GREEDY) for i, p in enumerate(prompts)]
        results = await asyncio.gather(*(collect(engine, s) for s in specs))
        await all_blocks_back(engine)
        return results

    results = with_engine(engine_config(llama_dir), body)
    for prompt, result in zip(prompts, results, strict=True):
        assert result == {0: hf_greedy(llama_hf, prompt, 10)}


def test_bad_request_is_refused_at_open_and_others_go_on(llama_dir: Path) -> None:
    async def body(engine: ProcessEngine) -> dict[int, list[int]]:
        with pytest.raises(ValueError, match="the prompt is empty"):
            await engine.open(GenerateRequest("bad", (), SamplingParams()))
        with pytest.raises(ValueError, match="outside the vocabulary"):
            await engine.open(GenerateRequest("bad2", (5, 10**6), SamplingParams()))
        ok = SamplingParams(max_tokens=3, ignore_eos=True)
        return await collect(engine, GenerateRequest("ok", (5, 6), ok))

    assert len(with_engine(engine_config(llama_dir), body)[0]) == 3


def test_n_samples_and_an_abandoned_stream_return_every_block(llama_dir: Path) -> None:
    async def body(engine: ProcessEngine) -> dict[int, list[int]]:
        n = SamplingParams(max_tokens=6, n=3, seed=1, ignore_eos=True)
        result = await collect(engine, GenerateRequest("n", (5, 6, 7), n))
        long = SamplingParams(max_tokens=400, ignore_eos=True)
        stream = await engine.open(GenerateRequest("long", tuple(range(3, 30)), long))
        async for _ in stream:
            break
        await stream.aclose()  # leaving early aborts it in the core
        aborted = await engine.open(GenerateRequest("a", tuple(range(3, 20)), long))
        deltas = []
        async for delta in aborted:
            deltas.append(delta)
            if len(deltas) == 2:
                engine.abort("a")
        assert deltas[-1].finish_reason == FinishReason.ABORT
        await all_blocks_back(engine)
        return result

    result = with_engine(engine_config(llama_dir), body)
    assert sorted(result) == [0, 1, 2] and all(len(t) == 6 for t in result.values())


def test_adapters_load_and_unload_through_the_core(llama_dir: Path, adapter_root: Path) -> None:
    prompt = [5, 6, 7, 8, 9]
    config = lora_engine_config(llama_dir, adapter_root, max_loras=2)

    async def body(engine: ProcessEngine) -> tuple[list[int], list[int]]:
        info = await engine.load_adapter("a1", "a1")
        assert info.name == "a1" and [a.name for a in engine.list_adapters()] == ["a1"]
        with_a1 = await collect(engine, GenerateRequest("x", tuple(prompt), GREEDY, adapter="a1"))
        base = await collect(engine, GenerateRequest("y", tuple(prompt), GREEDY))
        await engine.unload_adapter("a1")
        assert engine.list_adapters() == []
        with pytest.raises(AdapterNotFoundError):
            await engine.open(GenerateRequest("z", tuple(prompt), GREEDY, adapter="a1"))
        with pytest.raises(Exception, match="no_such"):
            await engine.load_adapter("bad", "no_such")
        return with_a1[0], base[0]

    with_a1, base = with_engine(config, body)
    assert with_a1 == peft_greedy(llama_dir, adapter_root / "a1", prompt, 10)
    assert base == peft_greedy(llama_dir, None, prompt, 10)


def test_remote_drafts_are_answered_by_the_parent(llama_dir: Path, llama_hf) -> None:
    asked: list[int] = []

    def remote(queries: list[DraftQuery]) -> list[Proposal | None]:
        asked.append(len(queries))
        return [Proposal(tuple((3 * i + 1) % 128 for i in range(q.k))) for q in queries]

    spec = SpecConfig(num_speculative_tokens=3, draft_cost_ratio=0.05)
    prompts = random_prompts([7, 11])
    params = SamplingParams(max_tokens=12, temperature=0)

    async def body(engine: ProcessEngine) -> list[dict[int, list[int]]]:
        specs = [
            GenerateRequest(f"r{i}", tuple(p), params, speculation=SpeculationMode.REMOTE)
            for i, p in enumerate(prompts)
        ]
        return await asyncio.gather(*(collect(engine, s) for s in specs))

    results = with_engine(engine_config(llama_dir, spec=spec), body, remote_draft=remote)
    assert asked, "the core never asked the parent for drafts"
    for prompt, result in zip(prompts, results, strict=True):
        assert result == {0: hf_greedy(llama_hf, prompt, 12)}


def test_a_killed_core_fails_every_stream_and_reports_unhealthy(llama_dir: Path) -> None:
    async def body(engine: ProcessEngine) -> None:
        long = SamplingParams(max_tokens=200, ignore_eos=True)
        stream = await engine.open(GenerateRequest("long", (5, 6, 7), long))
        await anext(stream)
        os.kill(engine._process.pid, signal.SIGKILL)
        with pytest.raises(EngineDeadError, match="engine stopped on an internal error"):
            async for _ in stream:
                pass
        assert not engine.is_alive
        with pytest.raises(EngineDeadError):
            await engine.open(GenerateRequest("after", (5,), SamplingParams()))

    with_engine(engine_config(llama_dir), body)


def test_a_core_that_cannot_start_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="could not start"):
            ProcessEngine(EngineConfig(model=str(tmp_path / "missing")), start_timeout_s=60)

    asyncio.run(main())
