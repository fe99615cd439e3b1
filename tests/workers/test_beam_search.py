"""Beam search equals transformers' generate(num_beams=..., length_penalty=...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import hf_greedy, make_engine, random_prompts
from workers.protocol import FinishReason, GenerateRequest
from workers.sampling_params import SamplingParams


@pytest.mark.parametrize(("width", "length_penalty"), [(2, 1.0), (3, 0.5), (4, 2.0), (3, -1.0)])
def test_beam_search_equals_transformers(
    llama_dir: Path, llama_hf, width: int, length_penalty: float
) -> None:
    prompts = random_prompts([5, 9, 17, 30], seed=2)
    engine = make_engine(llama_dir)
    params = SamplingParams(max_tokens=10, beam_width=width, length_penalty=length_penalty)
    specs = [GenerateRequest(f"b{i}", tuple(p), params) for i, p in enumerate(prompts)]
    out = engine.generate(specs)  # all four requests' beams share the batch
    for i, prompt in enumerate(prompts):
        ref = hf_greedy(llama_hf, prompt, 10, num_beams=width, length_penalty=length_penalty)
        assert out[f"b{i}"][0] == ref
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_beams_share_blocks_and_survive_preemption(llama_dir: Path, llama_hf) -> None:
    prompts = random_prompts([30, 25, 20], seed=3)
    engine = make_engine(llama_dir, num_blocks=30, block_size=4)
    params = SamplingParams(max_tokens=12, beam_width=3)
    specs = [GenerateRequest(f"b{i}", tuple(p), params) for i, p in enumerate(prompts)]
    out = engine.generate(specs)
    for i, prompt in enumerate(prompts):
        assert out[f"b{i}"][0] == hf_greedy(llama_hf, prompt, 12, num_beams=3)
    assert engine.scheduler.num_preemptions > 0
    assert engine.stats().num_free_blocks == 30


def test_beam_prompt_blocks_are_shared(llama_dir: Path) -> None:
    prompt = random_prompts([32], seed=4)[0]  # 8 full blocks of 4
    engine = make_engine(llama_dir, block_size=4)
    engine.add_request(
        GenerateRequest("b", tuple(prompt), SamplingParams(max_tokens=8, beam_width=4))
    )
    engine.step()  # prefill: the prompt's 8 blocks
    engine.step()  # 4 beams decode: one new block each, then losing beams are dropped
    used = engine.stats().num_total_blocks - engine.stats().num_free_blocks
    assert 8 < used <= 8 + 4  # 4 copies of the prompt would be 36


def test_beam_returns_n_best(llama_dir: Path) -> None:
    prompt = random_prompts([6], seed=5)[0]
    engine = make_engine(llama_dir)
    params = SamplingParams(max_tokens=6, beam_width=4, n=3)
    deltas = []
    engine.add_request(GenerateRequest("b", tuple(prompt), params))
    while engine.has_unfinished():
        deltas += engine.step()
    assert sorted(d.index for d in deltas) == [0, 1, 2]
    assert len({d.token_ids for d in deltas}) == 3
    assert all(d.finish_reason in (FinishReason.STOP, FinishReason.LENGTH) for d in deltas)
