"""Greedy output is identical with and without speculation, whatever proposes the drafts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.factories import hf_greedy, make_engine, random_prompts, speculator_of
from tests.lora_factories import make_lora_engine, peft_greedy
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.proposers import Proposal

PROMPTS = [5, 9, 17, 30, 3, 12]
GREEDY = SamplingParams(max_tokens=20, temperature=0)
SPEC: dict[str, Any] = dict(num_speculative_tokens=4, draft_cost_ratio=0.05)


def arbitrary_remote(queries):
    return [Proposal(tuple((7 * i + len(q.token_ids)) % 128 for i in range(q.k))) for q in queries]


def run(engine, mode: SpeculationMode, prompts: list[list[int]]) -> list[list[int]]:
    specs = [
        GenerateRequest(f"r{i}", tuple(p), GREEDY, speculation=mode) for i, p in enumerate(prompts)
    ]
    out = engine.generate(specs)
    return [out[f"r{i}"][0] for i in range(len(prompts))]


@pytest.fixture(scope="module")
def reference(llama_hf) -> list[list[int]]:
    return [hf_greedy(llama_hf, p, 20) for p in random_prompts(PROMPTS)]


@pytest.mark.parametrize("proposer", ["self-draft", "random-draft", "ngram", "remote"])
@pytest.mark.parametrize("setting", ["plain", "chunked", "preempted"])
def test_greedy_equal_with_speculation(
    llama_dir: Path, draft_dir: Path, reference, proposer: str, setting: str
) -> None:
    draft = {"self-draft": llama_dir, "random-draft": draft_dir}.get(proposer)
    limits = {
        "plain": {},
        "chunked": dict(max_num_batched_tokens=10),
        "preempted": dict(num_blocks=16, block_size=4),
    }[setting]
    engine = make_engine(
        llama_dir,
        spec=SpecConfig(draft_model=str(draft) if draft else None, draft_num_blocks=64, **SPEC),
        **limits,
    )
    mode = {"ngram": SpeculationMode.NGRAM, "remote": SpeculationMode.REMOTE}.get(
        proposer, SpeculationMode.COLOCATED
    )
    if proposer == "remote":
        engine.attach_remote_draft(arbitrary_remote)
    assert run(engine, mode, random_prompts(PROMPTS)) == reference
    stats = speculator_of(engine).policy.stats
    assert stats.num_drafted_tokens > 0
    if proposer == "self-draft":
        assert stats.acceptance_rate > 0.9
    if setting == "preempted":
        assert engine.scheduler.num_preemptions > 0
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_mixed_batch_of_modes_and_plain(llama_dir: Path, reference) -> None:
    engine = make_engine(
        llama_dir, spec=SpecConfig(draft_model=str(llama_dir), **SPEC), max_num_batched_tokens=16
    )
    modes = [SpeculationMode.NONE, SpeculationMode.COLOCATED, SpeculationMode.NGRAM]
    prompts = random_prompts(PROMPTS)
    specs = [
        GenerateRequest(f"r{i}", tuple(p), GREEDY, speculation=modes[i % 3])
        for i, p in enumerate(prompts)
    ]
    out = engine.generate(specs)
    assert [out[f"r{i}"][0] for i in range(len(prompts))] == reference


def test_lora_requests_speculate_with_a_base_draft(llama_dir: Path, adapter_root: Path) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=2)
    engine = make_engine(
        llama_dir, lora=engine.config.lora, spec=SpecConfig(draft_model=str(llama_dir), **SPEC)
    )
    engine.load_adapter("a1", "a1")
    engine.load_adapter("a2", "a2")
    prompts = random_prompts([6, 11])
    specs = [
        GenerateRequest(
            f"{a}-{i}",
            tuple(p),
            SamplingParams(max_tokens=10, temperature=0),
            adapter=a,
            speculation=SpeculationMode.COLOCATED,
        )
        for a in ("a1", "a2", None)
        for i, p in enumerate(prompts)
    ]
    out = engine.generate(specs)
    for a in ("a1", "a2", None):
        for i, p in enumerate(prompts):
            expected = peft_greedy(llama_dir, adapter_root / a if a else None, p, 10)
            assert out[f"{a}-{i}"][0] == expected
    per_adapter = speculator_of(engine).policy.stats.per_adapter
    assert {k.split("@")[0] for k in per_adapter} == {"a1", "a2", "base"}


def test_speculating_requests_join_overlapping_plain_ones(llama_dir: Path, reference) -> None:
    """Plain requests overlap steps (async scheduling); once a request that drafts runs,
    steps wait for their tokens again, and every output stays the reference."""
    engine = make_engine(
        llama_dir, spec=SpecConfig(draft_model=str(llama_dir), **SPEC), async_scheduling=True
    )
    prompts = random_prompts(PROMPTS)
    for i in range(3):
        engine.add_request(GenerateRequest(f"r{i}", tuple(prompts[i]), GREEDY))
    out: dict[str, list[int]] = {}

    def step() -> None:
        for d in engine.step():
            out.setdefault(d.request_id, []).extend(d.token_ids)

    for _ in range(4):
        step()
    assert engine.step_in_flight
    for i in range(3, len(prompts)):
        mode = SpeculationMode.COLOCATED
        engine.add_request(GenerateRequest(f"r{i}", tuple(prompts[i]), GREEDY, speculation=mode))
    while engine.has_unfinished():
        step()
    assert [out[f"r{i}"] for i in range(len(prompts))] == reference
    assert speculator_of(engine).policy.stats.num_drafted_tokens > 0
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


@pytest.mark.parametrize("pays", [False, True])
def test_steps_overlap_while_the_gate_keeps_drafting_off(
    llama_dir: Path, reference, pays: bool
) -> None:
    """Requests that ask for drafts: where the throughput gate says drafting does not pay,
    their steps overlap like plain ones; where it pays, each step waits for its tokens."""
    engine = make_engine(
        llama_dir, spec=SpecConfig(draft_model=str(llama_dir), **SPEC), async_scheduling=True
    )
    speculator_of(engine).gate.allow = lambda batch_size: pays  # type: ignore[method-assign]
    mode = SpeculationMode.COLOCATED
    prompts = random_prompts(PROMPTS)
    for i, p in enumerate(prompts):
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), GREEDY, speculation=mode))
    out: dict[str, list[int]] = {}
    overlapped = 0
    while engine.has_unfinished():
        for d in engine.step():
            out.setdefault(d.request_id, []).extend(d.token_ids)
        overlapped += engine.step_in_flight
    assert [out[f"r{i}"] for i in range(len(prompts))] == reference
    drafted = speculator_of(engine).policy.stats.num_drafted_tokens
    assert (overlapped > 0, drafted > 0) == (not pays, pays)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


@pytest.mark.parametrize("min_tokens", [5, 6, 7, 8])
def test_min_tokens_holds_stop_tokens_back_in_drafted_positions(
    llama_dir: Path, min_tokens: int
) -> None:
    """A stop token the model wants early comes the moment min_tokens allows it, also when
    that position is a verified draft (the self-draft proposes it there)."""
    prompt = tuple(random_prompts([6])[0])
    plain_engine = make_engine(llama_dir)
    free = plain_engine.generate([GenerateRequest("f", prompt, GREEDY)])["f"][0]
    held = SamplingParams(
        max_tokens=20, temperature=0, min_tokens=min_tokens, stop_token_ids=(free[3],)
    )
    expected = plain_engine.generate([GenerateRequest("p", prompt, held)])["p"][0]
    # the case this test is about: the stop token ends the output at the first chance
    assert len(expected) == min_tokens + 1 and expected[-1] == free[3], expected
    engine = make_engine(llama_dir, spec=SpecConfig(draft_model=str(llama_dir), **SPEC))
    request = GenerateRequest("s", prompt, held, speculation=SpeculationMode.COLOCATED)
    assert engine.generate([request])["s"][0] == expected
    stats = speculator_of(engine).policy.stats
    # the self-draft holds the stop token back too, so the target accepts what it drafts
    assert stats.num_drafted_tokens > 0 and stats.acceptance_rate > 0.9
