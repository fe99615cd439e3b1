"""The engine's batched sampling: a mixed batch gives each request what it gets alone, a
failing batch falls back to each sequence alone with the same tokens, and plain greedy
steps never reach the batched sampler."""

from __future__ import annotations

from pathlib import Path

import pytest

import workers.model_runner as runner_module
from tests.factories import make_engine, random_prompts
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

MIX = {
    "greedy": SamplingParams(max_tokens=8, temperature=0),
    "greedy-lp": SamplingParams(max_tokens=8, temperature=0, logprobs=3),
    "greedy-pen": SamplingParams(
        max_tokens=8, temperature=0, repetition_penalty=1.7, presence_penalty=0.5
    ),
    "greedy-bias": SamplingParams(max_tokens=8, temperature=0, logit_bias=((17, 4.0),)),
    "top-k": SamplingParams(max_tokens=8, temperature=0.8, top_k=5, seed=1, logprobs=2),
    "top-p": SamplingParams(max_tokens=8, temperature=1.2, top_p=0.7, seed=2),
    "min-p": SamplingParams(max_tokens=8, min_p=0.1, seed=3, frequency_penalty=1.0),
    "all": SamplingParams(
        max_tokens=8, temperature=0.7, top_k=8, top_p=0.9, min_p=0.05, seed=4, logprobs=5
    ),
    "bias": SamplingParams(max_tokens=8, seed=5, logit_bias=((40, 3.0), (41, -2.0))),
    "min-tokens": SamplingParams(max_tokens=8, min_tokens=6, seed=6, repetition_penalty=0.5),
    "n": SamplingParams(max_tokens=8, temperature=0.5, n=3, seed=9, logprobs=1),
}


Outputs = dict[str, list[tuple[int | float, ...]]]


def run(engine: LLMEngine, names: list[str]) -> Outputs:
    """Each named request's (sample index, token[, top ids..., logprob]) per output token,
    stepping the engine until everything it holds is done."""
    prompts = dict(zip(MIX, random_prompts([5 + i for i in range(len(MIX))], seed=3), strict=True))
    for name in names:
        engine.add_request(GenerateRequest(name, tuple(prompts[name]), MIX[name]))
    out: Outputs = {name: [] for name in names}
    while engine.has_unfinished():
        for d in engine.step():
            if d.request_id not in out:
                continue  # requests the caller added itself
            if d.logprobs is None:  # the request asked for none
                out[d.request_id] += [(d.index, t) for t in d.token_ids]
                continue
            for t, lp in zip(d.token_ids, d.logprobs, strict=True):
                top = tuple(i for i, _ in lp.top)
                out[d.request_id].append((d.index, t, *top, lp.logprob or 0.0))
    return out


def assert_same(got: Outputs, want: Outputs) -> None:
    """The same tokens and alternatives; log-probabilities equal up to the forward's
    rounding (a batch of one does its matmuls in another order)."""
    assert got.keys() == want.keys()
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for a, b in zip(got[name], want[name], strict=True):
            if isinstance(b[-1], float):
                assert a[:-1] == b[:-1], name
                assert a[-1] == pytest.approx(b[-1], abs=1e-4), name
            else:
                assert a == b, name


def test_a_mixed_batch_gives_each_request_what_it_gets_alone(llama_dir: Path) -> None:
    together = run(make_engine(llama_dir), list(MIX))
    for name in MIX:
        alone = run(make_engine(llama_dir), [name])
        assert_same(alone, {name: together[name]})


def test_a_failing_batch_falls_back_to_each_sequence_alone(llama_dir: Path, monkeypatch) -> None:
    names = [n for n in MIX if MIX[n].seed is not None or MIX[n].greedy]
    normal = run(make_engine(llama_dir), names)
    real = runner_module.sample_seqs
    sizes = []

    def fails_together(seqs, *args):
        sizes.append(len(seqs))
        if len(seqs) > 1:
            raise RuntimeError("the batched sampler failed")
        return real(seqs, *args)

    monkeypatch.setattr(runner_module, "sample_seqs", fails_together)
    assert_same(run(make_engine(llama_dir), names), normal)
    assert max(sizes) > 1 and 1 in sizes  # batches failed, and their sequences went alone


def test_plain_greedy_steps_stay_on_the_device_fast_path(llama_dir: Path, monkeypatch) -> None:
    calls = []
    real = runner_module.sample_seqs

    def counted(seqs, *args):
        calls.append(len(seqs))
        return real(seqs, *args)

    monkeypatch.setattr(runner_module, "sample_seqs", counted)
    run(make_engine(llama_dir), ["greedy"])
    assert calls == []
    run(make_engine(llama_dir), ["greedy", "top-k"])
    assert calls and max(calls) == 2


@pytest.mark.parametrize("name", ["top-k", "n"])
def test_same_seed_same_tokens_next_to_unseeded_rows(llama_dir: Path, name: str) -> None:
    engine = make_engine(llama_dir)
    prompts = random_prompts([6, 9, 4], seed=11)
    for i, p in enumerate(prompts):
        engine.add_request(GenerateRequest(f"u{i}", tuple(p), SamplingParams(max_tokens=8)))
    together = run(engine, [name])
    assert_same(together, run(make_engine(llama_dir), [name]))
