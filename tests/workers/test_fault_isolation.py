"""One request's failure ends that request only: the step goes on for the others, whose
tokens equal transformers', and every KV block returns to the pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from tests.factories import hf_greedy, make_engine, random_prompts
from tests.lora_factories import make_lora_engine, make_peft_adapter
from workers.engine import LLMEngine
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams

GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)


def bystanders(count: int = 3) -> list[GenerateRequest]:
    prompts = random_prompts([5, 9, 13, 7][:count], seed=21)
    return [GenerateRequest(f"ok-{i}", tuple(p), GREEDY) for i, p in enumerate(prompts)]


def run(engine: LLMEngine, specs: list[GenerateRequest]) -> dict[str, list[TokenDelta]]:
    for spec in specs:
        engine.add_request(spec)
    deltas: dict[str, list[TokenDelta]] = {s.request_id: [] for s in specs}
    while engine.has_unfinished():
        for delta in engine.step():
            deltas[delta.request_id].append(delta)
    return deltas


def assert_bystanders_equal_transformers(deltas, specs, llama_hf) -> None:
    for spec in specs:
        got = [t for d in deltas[spec.request_id] for t in d.token_ids]
        assert got == hf_greedy(llama_hf, list(spec.prompt_token_ids), 8), spec.request_id
        assert deltas[spec.request_id][-1].finish_reason == FinishReason.LENGTH


def assert_failed(deltas: list[TokenDelta], words: str) -> None:
    assert deltas[-1].finish_reason == FinishReason.ERROR
    assert words in (deltas[-1].error or "")


def assert_all_blocks_free(engine: LLMEngine) -> None:
    stats = engine.stats()
    assert stats.num_free_blocks == stats.num_total_blocks
    assert not engine.has_unfinished()


def test_a_sampling_error_fails_only_its_request(llama_dir: Path, llama_hf, monkeypatch) -> None:
    """The bad request's logits processing fails inside the step's batched sampling call:
    the batch is sampled again one sequence at a time, and only the bad one fails."""
    import workers.sampling_batch as batch_module

    real = batch_module.prepare_processing
    failed_batches = []

    def flaky(rows, *args):
        if any(r is not None and r[0].seed == 666 for r in rows):
            failed_batches.append(len(rows))
            raise IndexError("index 100000 is out of bounds for dimension 0 with size 128")
        return real(rows, *args)

    monkeypatch.setattr(batch_module, "prepare_processing", flaky)
    engine = make_engine(llama_dir)
    bad = GenerateRequest("bad", (5, 6, 7), SamplingParams(max_tokens=8, seed=666, min_tokens=2))
    specs = [*bystanders(), bad]
    deltas = run(engine, specs)
    assert failed_batches[0] == len(specs)  # it failed in a batch with every bystander
    assert failed_batches[-1] == 1  # then alone
    assert_failed(deltas["bad"], "request bad failed in the engine while sampling")
    assert "100000" not in (deltas["bad"][-1].error or "")  # details stay in the log
    assert_bystanders_equal_transformers(deltas, specs[:-1], llama_hf)
    assert_all_blocks_free(engine)


def test_a_forward_error_is_retried_request_by_request(
    llama_dir: Path, llama_hf, monkeypatch
) -> None:
    engine = make_engine(llama_dir)
    model = engine.runner.model
    real_forward = model.forward
    poison = [0, 1, 0, 1, 0]  # the bystanders' prompts hold ids >= 3 only

    def forward(input_ids, *args, **kwargs):
        ids = input_ids.tolist()
        if any(ids[i : i + 5] == poison for i in range(len(ids))):
            raise RuntimeError("a kernel failed on this input")
        return real_forward(input_ids, *args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    bad = GenerateRequest("bad", tuple(poison), GREEDY)
    specs = [*bystanders(), bad]
    deltas = run(engine, specs)
    assert_failed(deltas["bad"], "while running its forward pass")
    assert_bystanders_equal_transformers(deltas, specs[:-1], llama_hf)
    assert_all_blocks_free(engine)


def test_a_scheduling_error_fails_only_its_request(llama_dir: Path, llama_hf, monkeypatch) -> None:
    engine = make_engine(llama_dir)
    scheduler = engine.scheduler
    real = scheduler._scheduled

    def scheduled(req, seq, num_new):
        if req.request_id == "bad" and seq.num_output_tokens == 2:
            raise KeyError("no block table")
        return real(req, seq, num_new)

    real_decode = scheduler._schedule_decode

    def schedule_decode(req, seq, decodes, preempt):  # the same error on the column path
        if req.request_id == "bad" and seq.num_output_tokens == 2:
            raise KeyError("no block table")
        return real_decode(req, seq, decodes, preempt)

    monkeypatch.setattr(scheduler, "_scheduled", scheduled)
    monkeypatch.setattr(scheduler, "_schedule_decode", schedule_decode)
    bad = GenerateRequest("bad", (8, 9, 10, 11), GREEDY)
    specs = [*bystanders(), bad]
    deltas = run(engine, specs)
    assert len([t for d in deltas["bad"] for t in d.token_ids]) == 2  # what it had is kept
    assert_failed(deltas["bad"], "while being scheduled")
    assert_bystanders_equal_transformers(deltas, specs[:-1], llama_hf)
    assert_all_blocks_free(engine)


def overflowing_adapter(base_dir: Path, out: Path) -> Path:
    """A PEFT adapter whose weights are finite but whose output overflows float32."""
    make_peft_adapter(base_dir, out, seed=3, rank=4)
    path = out / "adapter_model.safetensors"
    tensors = {k: v * 1e18 for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path))
    return out


def test_non_finite_logits_fail_only_their_request(
    llama_dir: Path, llama_hf, tmp_path: Path
) -> None:
    overflowing_adapter(llama_dir, tmp_path / "huge")
    engine = make_lora_engine(llama_dir, tmp_path, max_loras=2, max_lora_rank=8)
    engine.load_adapter("huge", "huge")
    for sampling in (GREEDY, SamplingParams(max_tokens=8, logprobs=2, seed=1)):
        bad = GenerateRequest(f"bad-{sampling.greedy}", (5, 6, 7), sampling, adapter="huge")
        specs = [*bystanders(), bad]
        deltas = run(engine, specs)
        assert_failed(deltas[bad.request_id], "NaN or infinite logits")
        assert_bystanders_equal_transformers(deltas, specs[:-1], llama_hf)
        assert_all_blocks_free(engine)
    info = {a.name: a for a in engine.list_adapters()}
    assert info["huge"].num_running == 0  # the failed requests released the adapter


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(max_tokens=8, repetition_penalty=0.01, min_tokens=2),
        SamplingParams(max_tokens=8, repetition_penalty=100.0, temperature=1.1e-5),
        SamplingParams(max_tokens=8, temperature=1e308, min_tokens=8, top_p=1e-300),
        SamplingParams(max_tokens=8, temperature=5e-5, top_k=1, min_p=1.0),
        SamplingParams(max_tokens=8, stop_token_ids=tuple(range(128)), min_tokens=3),
        SamplingParams(max_tokens=4, beam_width=3, n=2, length_penalty=-100.0),
        SamplingParams(max_tokens=8, seed=2**63 - 1, n=3, frequency_penalty=2.0),
        SamplingParams(max_tokens=8, seed=-(2**63), presence_penalty=-2.0, logprobs=20),
    ],
)
def test_extreme_valid_params_decode_without_error(llama_dir: Path, llama_hf, sampling) -> None:
    engine = make_engine(llama_dir)
    specs = [*bystanders(2), GenerateRequest("edge", (5, 6, 7, 8), sampling)]
    deltas = run(engine, specs)
    finished = [d for d in deltas["edge"] if d.finished]
    assert len(finished) == sampling.n
    assert all(d.finish_reason in (FinishReason.STOP, FinishReason.LENGTH) for d in finished)
    assert all(0 <= t < 128 for d in deltas["edge"] for t in d.token_ids)
    assert_bystanders_equal_transformers(deltas, specs[:-1], llama_hf)
    assert_all_blocks_free(engine)


def test_out_of_vocabulary_stop_token_is_refused(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    params = SamplingParams(stop_token_ids=(100000,), min_tokens=1)
    with pytest.raises(ValueError, match=r"stop_token_ids holds token id 100000, outside"):
        engine.add_request(GenerateRequest("x", (5, 6), params))
    assert_all_blocks_free(engine)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=float("inf")), "temperature must be a finite number"),
        (dict(repetition_penalty=float("nan")), "repetition_penalty must be a finite number"),
        (dict(seed=2**70), "seed must be in"),
        (dict(repetition_penalty=1e-300), "repetition_penalty must be in [0.01, 100]"),
        (dict(length_penalty=1e9), "length_penalty must be in"),
        (dict(logprobs=21), "logprobs must be in [0, 20]"),
        (dict(max_tokens=True), "max_tokens must be an integer"),
    ],
)
def test_non_finite_and_out_of_range_params_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        SamplingParams(**kwargs)
