"""Our engine against transformers: same logits, same greedy tokens, however it schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.factories import (
    hf_greedy,
    load_hf,
    make_engine,
    make_tiny_model,
    prompt_logits,
    random_prompts,
)
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

ARCHS = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"]
PROMPT_LENGTHS = [5, 9, 17, 30, 3, 12]
GREEDY = SamplingParams(max_tokens=16, temperature=0)


def greedy_outputs(engine, prompts: list[list[int]]) -> list[list[int]]:
    specs = [GenerateRequest(f"r{i}", tuple(p), GREEDY) for i, p in enumerate(prompts)]
    out = engine.generate(specs)
    return [out[f"r{i}"][0] for i in range(len(prompts))]


def expected(hf_model, prompts: list[list[int]]) -> list[list[int]]:
    return [hf_greedy(hf_model, p, GREEDY.max_tokens) for p in prompts]


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_batch_equals_transformers(
    model_dirs: dict[str, Path], arch: str, overlap: bool
) -> None:
    prompts = random_prompts(PROMPT_LENGTHS)
    engine = make_engine(model_dirs[arch], async_scheduling=overlap)
    assert greedy_outputs(engine, prompts) == expected(load_hf(model_dirs[arch]), prompts)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}


@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_of_one_forward_match(model_dirs: dict[str, Path], arch: str, dtype: str) -> None:
    prompt = random_prompts([23])[0]
    engine = make_engine(model_dirs[arch], block_size=4, dtype=dtype)
    hf = load_hf(model_dirs[arch]).to(getattr(torch, dtype))
    ours = prompt_logits(engine, prompt)
    with torch.inference_mode():
        theirs = hf(torch.tensor([prompt])).logits[0].float()
    assert engine.runner.kv_caches[0].dtype == getattr(torch, dtype)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_chunked_prefill_keeps_output(llama_dir: Path, llama_hf, overlap: bool) -> None:
    prompts = random_prompts(PROMPT_LENGTHS)
    engine = make_engine(llama_dir, max_num_batched_tokens=7, async_scheduling=overlap)
    assert greedy_outputs(engine, prompts) == expected(llama_hf, prompts)


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_prefix_cache_hit_keeps_output(llama_dir: Path, llama_hf, overlap: bool) -> None:
    prompt = random_prompts([30])[0]
    engine = make_engine(llama_dir, block_size=4, async_scheduling=overlap)
    first = greedy_outputs(engine, [prompt])
    hits_before = engine.kv.prefix_hit_tokens
    specs = [GenerateRequest("again", tuple(prompt), GREEDY)]
    second = engine.generate(specs)["again"]
    assert engine.kv.prefix_hit_tokens - hits_before == 28  # 7 full blocks of 4, last recomputed
    assert first == second == expected(llama_hf, [prompt])


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_preemption_by_recompute_keeps_output(llama_dir: Path, llama_hf, overlap: bool) -> None:
    prompts = random_prompts(PROMPT_LENGTHS)
    engine = make_engine(llama_dir, num_blocks=14, block_size=4, async_scheduling=overlap)
    assert greedy_outputs(engine, prompts) == expected(llama_hf, prompts)
    assert engine.scheduler.num_preemptions > 0
    assert engine.stats().num_free_blocks == 14


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_preemption_without_prefix_cache(llama_dir: Path, llama_hf, overlap: bool) -> None:
    prompts = random_prompts(PROMPT_LENGTHS)
    engine = make_engine(
        llama_dir,
        num_blocks=14,
        block_size=4,
        enable_prefix_caching=False,
        max_num_batched_tokens=9,
        async_scheduling=overlap,
    )
    assert greedy_outputs(engine, prompts) == expected(llama_hf, prompts)
    assert engine.scheduler.num_preemptions > 0


def test_llama3_rope_scaling(tmp_path: Path) -> None:
    rope = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
        "rope_theta": 500000.0,
    }
    model_dir = make_tiny_model(tmp_path / "l3", rope_parameters=rope)
    prompts = random_prompts([40, 7])
    assert greedy_outputs(make_engine(model_dir), prompts) == expected(load_hf(model_dir), prompts)
