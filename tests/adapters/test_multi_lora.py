"""Many adapters in one batch, each request's output equal to peft's for its adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import adapters_of, random_prompts
from tests.lora_factories import make_lora_engine, peft_greedy
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

GREEDY = SamplingParams(max_tokens=10, temperature=0)


@pytest.fixture(scope="module")
def expected(llama_dir: Path, adapter_root: Path) -> dict[str | None, list[list[int]]]:
    prompts = random_prompts([7, 12, 5])
    names: list[str | None] = [None, "a1", "a2", "a3", "a4", "a5", "a6", "a1-v2"]
    return {
        name: [
            peft_greedy(llama_dir, adapter_root / name if name else None, p, 10) for p in prompts
        ]
        for name in names
    }


def run_mixed(engine, names: list[str | None]) -> dict[str | None, list[list[int]]]:
    prompts = random_prompts([7, 12, 5])
    specs = [
        GenerateRequest(f"{name}-{i}", tuple(p), GREEDY, adapter=name)
        for name in names
        for i, p in enumerate(prompts)
    ]
    out = engine.generate(specs)
    return {name: [out[f"{name}-{i}"][0] for i in range(len(prompts))] for name in names}


def test_four_adapters_and_base_in_one_batch_equal_peft(
    llama_dir: Path, adapter_root: Path, expected
) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=4)
    for adapter in ("a1", "a2", "a3", "a4"):
        engine.load_adapter(adapter, adapter)
    names = [None, "a1", "a2", "a3", "a4"]
    engine.add_request(GenerateRequest("probe", (5, 6, 7), GREEDY, adapter="a1"))
    step = engine.scheduler.schedule()  # what one step holds once all are admitted
    engine.abort("probe")
    assert step.num_tokens == 3
    out = run_mixed(engine, names)
    for name in names:
        assert out[name] == expected[name], name
    assert all(expected[n] != expected[None] for n in names[1:])  # adapters matter
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_steps_mix_adapters(llama_dir: Path, adapter_root: Path) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=4)
    for adapter in ("a1", "a2", "a3"):
        engine.load_adapter(adapter, adapter)
    for i, name in enumerate([None, "a1", "a2", "a3"]):
        engine.add_request(GenerateRequest(f"r{i}", (5, 6, 7, 8), GREEDY, adapter=name))
    step = engine.scheduler.schedule()
    assert {s.adapter_key is None for s in step.seqs} == {True, False}
    assert len({s.adapter_key for s in step.seqs}) == 4


def test_more_adapters_than_slots_and_memory(llama_dir: Path, adapter_root: Path, expected) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=2, max_cpu_loras=3)
    names = ["a1", "a2", "a3", "a4", "a5", "a6"]
    for adapter in names:
        engine.load_adapter(adapter, adapter)
    residency = {a.name: a.residency for a in engine.list_adapters()}
    # Host memory keeps the 3 most recently loaded; the oldest went back to disk (LRU).
    assert residency == {
        "a1": "disk",
        "a2": "disk",
        "a3": "disk",
        "a4": "cpu",
        "a5": "cpu",
        "a6": "cpu",
    }
    out = run_mixed(engine, [None, *names])
    for name in [None, *names]:
        assert out[name] == expected[name], name
    assert adapters_of(engine).num_disk_loads >= 3
    assert adapters_of(engine).slots.num_writes >= 6
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_pinned_adapter_stays_in_memory_and_slot(
    llama_dir: Path, adapter_root: Path, expected
) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=2, max_cpu_loras=2)
    engine.load_adapter("a1", "a1", pinned=True)
    run_mixed(engine, ["a1"])
    for name in ("a2", "a3", "a4"):
        engine.load_adapter(name, name)
        assert run_mixed(engine, [name]) == {name: expected[name]}
    residency = {a.name: a.residency for a in engine.list_adapters()}
    assert residency["a1"] == "device"
    assert residency["a4"] == "device"
    assert residency["a2"] == residency["a3"] == "disk"
    assert run_mixed(engine, ["a1"]) == {"a1": expected["a1"]}


def test_replace_bumps_version_and_never_reuses_old_prefix_cache(
    llama_dir: Path, adapter_root: Path, expected
) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, block_size=4)
    first = engine.load_adapter("a1", "a1")
    assert run_mixed(engine, ["a1"]) == {"a1": expected["a1"]}
    hits = engine.kv.prefix_hit_tokens
    second = engine.load_adapter("a1", "a1-v2")  # same name, new weights
    assert second.version > first.version
    assert run_mixed(engine, ["a1"]) == {"a1": expected["a1-v2"]}
    assert engine.kv.prefix_hit_tokens == hits  # old KV was never reused
    assert run_mixed(engine, ["a1"]) == {"a1": expected["a1-v2"]}
    assert engine.kv.prefix_hit_tokens > hits  # the new version's own KV is


def test_max_loras_per_step_without_starvation(llama_dir: Path, adapter_root: Path) -> None:
    engine = make_lora_engine(llama_dir, adapter_root, max_loras=2, max_cpu_loras=6)
    for adapter in ("a1", "a2", "a3", "a4"):
        engine.load_adapter(adapter, adapter)
    params = SamplingParams(max_tokens=4, ignore_eos=True)
    order = ["a1", "a2", "a3", "a1", "a2", None, "a4"]
    for i, name in enumerate(order):
        engine.add_request(GenerateRequest(f"r{i}", (5, 6, 7), params, adapter=name))
    finished: list[str] = []
    while engine.has_unfinished():
        step = engine.scheduler.schedule()
        assert len({s.adapter_key for s in step.seqs} - {None}) <= 2
        result = engine.runner.execute(step)
        from workers.step_results import apply_step

        for d in apply_step(engine.scheduler, step, result, engine.max_model_len):
            if d.finished:
                finished.append(d.request_id)
    assert sorted(finished) == sorted(f"r{i}" for i in range(len(order)))
    # a3 waited for a slot; a1/a2 requests that came after it did not overtake it.
    assert finished.index("r2") < finished.index("r3")
