"""logit_bias: added to the logits before sampling, as transformers' logits processors do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from tests.factories import hf_greedy, make_engine, random_prompts
from workers.protocol import GenerateRequest
from workers.sampler import processed_logits
from workers.sampling_params import SamplingParams


class AddBias(LogitsProcessor):
    """The oracle: transformers adding the same bias to the scores at every step."""

    def __init__(self, bias: dict[int, float]) -> None:
        self.bias = bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        biased = scores.clone()
        for token, value in self.bias.items():
            biased[:, token] += value
        return biased


def test_greedy_with_a_bias_equals_transformers_with_the_same_bias(
    llama_dir: Path, llama_hf
) -> None:
    prompts = random_prompts([7, 12, 4], seed=5)
    plain = [hf_greedy(llama_hf, p, 10) for p in prompts]
    # Push down each prompt's first greedy token and push up two others a little: the
    # argmax changes somewhere, but not to a constant.
    bias = {plain[0][0]: -100.0, plain[1][0]: -100.0, 17: 2.5, 40: 1.5}
    expected = [
        hf_greedy(llama_hf, p, 10, logits_processor=LogitsProcessorList([AddBias(bias)]))
        for p in prompts
    ]
    assert expected != plain
    engine = make_engine(llama_dir)
    params = SamplingParams(max_tokens=10, temperature=0, logit_bias=tuple(sorted(bias.items())))
    free = SamplingParams(max_tokens=10, temperature=0)
    specs = [GenerateRequest(f"b{i}", tuple(p), params) for i, p in enumerate(prompts)]
    specs += [GenerateRequest(f"f{i}", tuple(p), free) for i, p in enumerate(prompts)]
    out = engine.generate(specs)
    assert [out[f"b{i}"][0] for i in range(3)] == expected
    assert [out[f"f{i}"][0] for i in range(3)] == plain  # rows without a bias untouched


def test_a_large_bias_forces_a_token_even_when_sampling(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    params = SamplingParams(max_tokens=6, temperature=1.0, seed=3, logit_bias=((33, 100.0),))
    out = engine.generate([GenerateRequest("s", tuple(random_prompts([5])[0]), params)])
    assert out["s"][0] == [33] * 6


def test_bias_is_applied_after_penalties() -> None:
    row = torch.tensor([1.0, 2.0, -1.0, 0.5])
    params = SamplingParams(repetition_penalty=2.0, logit_bias=((0, 3.0), (2, -1.0)))
    out = processed_logits(row, params, [0, 2], [], [], 0)
    assert torch.allclose(out, torch.tensor([0.5 + 3.0, 2.0, -2.0 - 1.0, 0.5]))


@pytest.mark.parametrize(
    ("bias", "message"),
    [
        (((5, 100.5),), "logit_bias values must be numbers in"),
        (((5, float("nan")),), "logit_bias values must be numbers in"),
        (((-1, 1.0),), "logit_bias keys must be token ids"),
    ],
)
def test_bad_bias_is_refused(bias, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(logit_bias=bias)


def test_engine_refuses_a_bias_outside_the_vocabulary(llama_dir: Path) -> None:
    engine = make_engine(llama_dir)
    spec = GenerateRequest("x", (3, 4), SamplingParams(logit_bias=((128, 1.0),)))
    with pytest.raises(ValueError, match="logit_bias holds token id 128"):
        engine.validate(spec)
