"""The CUDA path (Triton decode kernel, CUDA graphs, greedy on device) gives the same greedy
tokens as the CPU reference path and as transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.factories import hf_greedy, make_engine, random_prompts, speculator_of
from tests.workers.test_async_scheduling import mixed_workload
from tests.workers.test_async_scheduling import run as run_all
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)


def greedy(engine, prompts: list[list[int]], **params) -> list[list[int]]:
    sampling = SamplingParams(max_tokens=24, temperature=0, **params)
    specs = [GenerateRequest(f"r{i}", tuple(p), sampling) for i, p in enumerate(prompts)]
    out = engine.generate(specs)
    return [out[f"r{i}"][0] for i in range(len(prompts))]


@pytest.mark.parametrize("graphs", [True, False])
def test_cuda_greedy_equals_cpu_and_transformers(llama_dir: Path, llama_hf, graphs: bool) -> None:
    prompts = random_prompts([5, 9, 17, 30, 3, 12, 40, 1])
    cuda = make_engine(llama_dir, device="cuda", dtype="float32", cuda_graphs=graphs)
    assert (cuda.runner.graphs is not None) == graphs
    cpu = make_engine(llama_dir)
    ours = greedy(cuda, prompts)
    assert ours == greedy(cpu, prompts)
    assert ours == [hf_greedy(llama_hf, p, 24) for p in prompts]
    assert cuda.stats().num_free_blocks == cuda.stats().num_total_blocks


def test_cuda_mixed_features_run(llama_dir: Path) -> None:
    """Penalties, logprobs, beams and n samples leave the fast path and still agree."""
    prompts = random_prompts([7, 11])
    cuda = make_engine(llama_dir, device="cuda", dtype="float32")
    cpu = make_engine(llama_dir)
    for params in (dict(repetition_penalty=1.3), dict(logprobs=2)):
        assert greedy(cuda, prompts, **params) == greedy(cpu, prompts, **params)
    beams = SamplingParams(max_tokens=8, beam_width=3)
    spec = [GenerateRequest("b", tuple(prompts[0]), beams)]
    assert cuda.generate(spec) == make_engine(llama_dir).generate(spec)


def test_cuda_lora_in_graphs_equals_cpu(llama_dir: Path, adapter_root: Path) -> None:
    from workers.config import LoRAConfig

    lora = LoRAConfig(max_loras=4, adapter_roots=(str(adapter_root),))
    prompts = random_prompts([6, 11, 4, 9])
    outputs = []
    for device in ("cuda", "cpu"):
        engine = make_engine(llama_dir, device=device, dtype="float32", lora=lora)
        for name in ("a1", "a2", "a3"):
            engine.load_adapter(name, name)
        sampling = SamplingParams(max_tokens=12, temperature=0)
        specs = [
            GenerateRequest(f"{a}-{i}", tuple(p), sampling, adapter=a)
            for a in ("a1", "a2", "a3", None)
            for i, p in enumerate(prompts)
        ]
        outputs.append(engine.generate(specs))
        if device == "cuda":
            assert engine.runner.graphs is not None and engine.runner.graphs.lora_slots
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("mode", [SpeculationMode.COLOCATED, SpeculationMode.NGRAM])
def test_cuda_speculation_in_graphs_equals_cpu(llama_dir: Path, mode: SpeculationMode) -> None:
    """Verification steps (the last token plus drafts, padded per sequence) and the draft's
    catch-up replay multi-token graphs; greedy output stays that of the CPU path."""
    spec = SpecConfig(
        draft_model=str(llama_dir), num_speculative_tokens=3, min_acceptance=0.0, max_batch_size=64
    )
    prompts = random_prompts([5, 9, 17, 30, 3, 12, 40, 1])
    sampling = SamplingParams(max_tokens=24, temperature=0)
    specs = [
        GenerateRequest(f"r{i}", tuple(p), sampling, speculation=mode)
        for i, p in enumerate(prompts)
    ]
    cuda = make_engine(llama_dir, device="cuda", dtype="float32", spec=spec)
    assert cuda.runner.graphs is not None and cuda.runner.graphs.max_tokens == 4
    # draft every step
    speculator_of(cuda).gate.allow = lambda batch_size: True  # type: ignore[method-assign]
    widths: list[int] = []
    run = cuda.runner.graphs.run

    def counted(rows, width, fill=None):
        widths.append(width)
        return run(rows, width, fill)

    cuda.runner.graphs.run = counted  # type: ignore[method-assign]
    ours = cuda.generate(specs)
    assert ours == make_engine(llama_dir, spec=spec).generate(specs)
    assert speculator_of(cuda).policy.stats.num_drafted_tokens > 0
    assert max(widths) > 1  # verification ran in a graph
    assert cuda.stats().num_free_blocks == cuda.stats().num_total_blocks


def test_cuda_async_scheduling_equals_cpu(llama_dir: Path) -> None:
    """Steps overlap on the GPU (greedy ones) and the tokens, logprobs and finish reasons
    equal the CPU engine's without overlap, for a workload mixing every kind of request."""
    cuda = make_engine(llama_dir, device="cuda", dtype="float32", max_num_batched_tokens=24)
    assert cuda.async_scheduling
    overlapped = 0
    step = cuda.step

    def counted():
        nonlocal overlapped
        deltas = step()
        overlapped += cuda.step_in_flight
        return deltas

    cuda.step = counted  # type: ignore[method-assign]
    cpu = make_engine(llama_dir, max_num_batched_tokens=24, async_scheduling=False)

    def tokens(seen: dict) -> dict:  # logprobs differ in the last digits across devices
        return {key: [(c[0], c[2], c[3]) for c in chunks] for key, chunks in seen.items()}

    assert tokens(run_all(cuda, mixed_workload())) == tokens(run_all(cpu, mixed_workload()))
    assert overlapped > 10
    assert cuda.stats().num_free_blocks == cuda.stats().num_total_blocks


def test_cuda_engine_in_its_own_process_equals_cpu(llama_dir: Path, llama_hf) -> None:
    """ProcessEngine on CUDA (graphs, async scheduling: the Serve replica's default) streams
    the tokens the CPU engine and transformers give."""
    import asyncio

    from tests.factories import engine_config
    from workers.process_engine import ProcessEngine

    prompts = random_prompts([5, 9, 17, 30])
    sampling = SamplingParams(max_tokens=24, temperature=0)
    config = engine_config(
        llama_dir, device="cuda", dtype="float32", cuda_graphs=True, async_scheduling=True
    )

    async def main() -> list[list[int]]:
        engine = ProcessEngine(config, start_timeout_s=300)
        try:

            async def one(i: int, p: list[int]) -> list[int]:
                spec = GenerateRequest(f"r{i}", tuple(p), sampling)
                return [t async for d in await engine.open(spec) for t in d.token_ids]

            return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
        finally:
            engine.shutdown()

    ours = asyncio.run(main())
    assert ours == greedy(make_engine(llama_dir), prompts)
    assert ours == [hf_greedy(llama_hf, p, 24) for p in prompts]


def staggered(engine, prompts: list[list[int]], every: int = 2) -> dict[str, list[int]]:
    """Greedy tokens of requests arriving one every `every` steps (mixed steps: a prompt
    or its chunks with the running decodes)."""
    sampling = SamplingParams(max_tokens=16, temperature=0)
    out: dict[str, list[int]] = {f"r{i}": [] for i in range(len(prompts))}
    pending = list(enumerate(prompts))
    steps = 0
    while pending or engine.has_unfinished():
        if pending and steps % every == 0:
            i, p = pending.pop(0)
            engine.add_request(GenerateRequest(f"r{i}", tuple(p), sampling))
        for d in engine.step():
            out[d.request_id] += d.token_ids
        steps += 1
    return out


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_cuda_mixed_graphs_equal_eager(llama_dir: Path, async_scheduling: bool) -> None:
    """Steps with prompts or prompt chunks (a 48-token budget splits the long prompts)
    replay mixed CUDA graphs and give the greedy tokens of the eager mixed steps and of the
    CPU engine; every KV block returns."""
    prompts = random_prompts([5, 9, 17, 30, 3, 12, 40, 1, 70, 100, 2, 33])
    outputs = []
    replays = 0
    for mixed in (True, False):
        engine = make_engine(
            llama_dir,
            device="cuda",
            dtype="float32",
            mixed_graphs=mixed,
            max_num_batched_tokens=48,
            async_scheduling=async_scheduling,
        )
        graphs = engine.runner.graphs
        assert graphs is not None and (graphs.mixed is not None) == mixed
        if graphs.mixed is not None:
            run = graphs.mixed.run

            def counted(rows, fill=None, run=run):
                nonlocal replays
                replays += 1
                return run(rows, fill)

            graphs.mixed.run = counted  # type: ignore[method-assign]
        outputs.append(staggered(engine, prompts))
        assert engine.stats().num_free_blocks == engine.stats().num_total_blocks
    assert replays > 0
    assert outputs[0] == outputs[1]
    cpu = make_engine(llama_dir, max_num_batched_tokens=48, async_scheduling=False)
    assert outputs[0] == staggered(cpu, prompts)


def test_cuda_mixed_graphs_with_lora_equal_cpu(llama_dir: Path, adapter_root: Path) -> None:
    from workers.config import LoRAConfig

    lora = LoRAConfig(max_loras=4, adapter_roots=(str(adapter_root),))
    prompts = random_prompts([6, 11, 40, 9])
    outputs = []
    for device in ("cuda", "cpu"):
        engine = make_engine(
            llama_dir, device=device, dtype="float32", lora=lora, mixed_graphs=True
        )
        for name in ("a1", "a2"):
            engine.load_adapter(name, name)
        sampling = SamplingParams(max_tokens=12, temperature=0)
        seen: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):  # one arrival per step: mixed steps
            adapter = ("a1", "a2", None)[i % 3]
            engine.add_request(GenerateRequest(f"{i}", tuple(p), sampling, adapter=adapter))
            for d in engine.step():
                seen.setdefault(d.request_id, []).extend(d.token_ids)
        while engine.has_unfinished():
            for d in engine.step():
                seen.setdefault(d.request_id, []).extend(d.token_ids)
        outputs.append(seen)
        if device == "cuda":
            assert engine.runner.graphs is not None and engine.runner.graphs.mixed is not None
    assert outputs[0] == outputs[1]
