"""Requests end cleanly: aborts and finishes return every block; bad input is refused with a
clear error and the engine keeps serving."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.factories import hf_greedy, make_engine, make_tiny_model, random_prompts
from workers.engine import LLMEngine
from workers.protocol import FinishReason, GenerateRequest
from workers.sampling_params import SamplingParams


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_no_block_leak_after_1000_random_requests_with_aborts(
    llama_dir: Path, overlap: bool
) -> None:
    rng = random.Random(0)
    engine = make_engine(
        llama_dir,
        num_blocks=20,
        block_size=4,
        max_num_seqs=12,
        max_num_batched_tokens=64,
        async_scheduling=overlap,
    )
    live: set[str] = set()
    submitted = 0
    while submitted < 1000 or engine.has_unfinished():
        for _ in range(rng.randint(0, 6)):
            if submitted == 1000:
                break
            params = SamplingParams(
                max_tokens=rng.randint(1, 12),
                temperature=rng.choice([0.0, 1.0]),
                n=rng.choice([1, 1, 1, 2, 3]),
                seed=rng.choice([None, 5]),
            )
            if rng.random() < 0.05:
                params = SamplingParams(max_tokens=rng.randint(1, 4), beam_width=2)
            prompt = [rng.randrange(3, 128) for _ in range(rng.randint(1, 20))]
            rid = f"r{submitted}"
            engine.add_request(GenerateRequest(rid, tuple(prompt), params))
            live.add(rid)
            submitted += 1
        if live and rng.random() < 0.3:
            victim = rng.choice(sorted(live))
            deltas = engine.abort(victim)
            assert all(d.finish_reason == FinishReason.ABORT for d in deltas)
            live.discard(victim)
        for delta in engine.step():
            if delta.finished and not any(
                r.request_id == delta.request_id for r in engine.scheduler.running
            ):
                live.discard(delta.request_id)
    assert engine.stats().num_free_blocks == 20
    assert all(b.ref_cnt == 0 for b in engine.kv.pool.blocks)
    assert engine.kv.block_tables == {}
    assert engine.scheduler.num_preemptions > 0


def test_abort_frees_blocks_at_once(llama_dir: Path) -> None:
    engine = make_engine(llama_dir, block_size=4)
    engine.add_request(GenerateRequest("a", tuple(range(3, 40)), SamplingParams(max_tokens=50)))
    engine.step()
    assert engine.stats().num_free_blocks < engine.stats().num_total_blocks
    [delta] = engine.abort("a")
    assert delta.finish_reason == FinishReason.ABORT
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks
    assert not engine.has_unfinished()
    assert engine.abort("a") == []


BAD_PARAMS = [
    (dict(max_tokens=0), "max_tokens must be >= 1"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(top_p=0.0), "top_p must be in (0, 1]"),
    (dict(top_p=1.5), "top_p must be in (0, 1]"),
    (dict(top_k=-2), "top_k must be >= 1, or 0 or -1 to disable"),
    (dict(min_p=2.0), "min_p must be in [0, 1]"),
    (dict(n=0), "n must be >= 1"),
    (dict(min_tokens=5, max_tokens=2), "min_tokens must be in [0, max_tokens=2]"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_PARAMS)
def test_bad_sampling_params_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SamplingParams(**kwargs)


def test_bad_requests_are_refused_and_the_engine_keeps_serving(llama_dir: Path, llama_hf) -> None:
    engine = make_engine(llama_dir)
    prompt = random_prompts([7])[0]
    greedy = SamplingParams(max_tokens=8, temperature=0)
    engine.add_request(GenerateRequest("good", tuple(prompt), greedy))
    out = [t for d in engine.step() for t in d.token_ids]
    bad = {
        "the prompt is empty": (),
        "the prompt has 300 tokens but the model's context is 256": tuple([5] * 300),
        r"token id 128 is outside the vocabulary \[0, 128\)": (5, 128),
        "token id -1 is outside": (5, -1),
        "request id 'good' is already in use": (5,),
    }
    for message, tokens in bad.items():
        rid = "good" if "already" in message else f"bad-{len(tokens)}"
        with pytest.raises(ValueError, match=message):
            engine.add_request(GenerateRequest(rid, tokens, greedy))
    while engine.has_unfinished():
        out += [t for d in engine.step() for t in d.token_ids]
    assert out == hf_greedy(llama_hf, prompt, 8)


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_generation_stops_at_the_context_length(tmp_path: Path, overlap: bool) -> None:
    model_dir = make_tiny_model(tmp_path / "short", max_position_embeddings=24)
    engine = make_engine(model_dir, async_scheduling=overlap)
    out = engine.generate(
        [GenerateRequest("c", tuple(range(3, 23)), SamplingParams(max_tokens=50, ignore_eos=True))]
    )
    assert len(out["c"][0]) == 4


def test_unsupported_architecture_and_missing_files(tmp_path: Path, llama_dir: Path) -> None:
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ValueError, match=r"unsupported architecture.*LlamaForCausalLM"):
        make_engine(tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"config\.json not found"):
        make_engine(tmp_path / "nowhere")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((llama_dir / "config.json").read_text())
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights"):
        make_engine(tmp_path / "noweights")
    assert isinstance(make_engine(llama_dir), LLMEngine)


def test_priority_runs_first_and_fcfs_within_a_priority(llama_dir: Path) -> None:
    engine = make_engine(llama_dir, max_num_seqs=1)  # one request at a time
    params = SamplingParams(max_tokens=2, ignore_eos=True)
    for rid, priority in (("first", 1), ("second", 1), ("urgent", 0)):
        engine.add_request(GenerateRequest(rid, (5, 6, 7), params, priority=priority))
    order: list[str] = []
    while engine.has_unfinished():
        order += [d.request_id for d in engine.step() if d.finished]
    assert order == ["urgent", "first", "second"]
