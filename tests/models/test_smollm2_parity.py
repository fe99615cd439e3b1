"""The engine on the real model (SmolLM2-135M-Instruct, converted by `make test`'s set-up):
greedy chat answers equal transformers' token for token, with the same log-probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.smollm2.paths import MODEL_DIR
from models.smollm2.prompts import CHAT_PROMPTS, chat_prompt_ids
from tests.factories import make_engine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

MAX_TOKENS = 8
LOGPROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def converted() -> str:
    assert (MODEL_DIR / "model.safetensors").is_file(), (
        f"no converted model at {MODEL_DIR}; run `python -m models.smollm2.convert`"
    )
    return str(MODEL_DIR)


@pytest.fixture(scope="module")
def prompts(converted: str) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    return [chat_prompt_ids(tokenizer, message) for message in CHAT_PROMPTS]


@pytest.fixture(scope="module")
def reference(converted: str, prompts: list[list[int]]) -> list[tuple[list[int], list[float]]]:
    """transformers' greedy answer to each prompt and the log-probability of each token."""
    model = AutoModelForCausalLM.from_pretrained(
        converted, dtype=torch.float32, local_files_only=True
    ).eval()
    answers = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=MAX_TOKENS,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        tokens = out.sequences[0, len(prompt) :].tolist()
        logprobs = [
            torch.log_softmax(score[0].float(), -1)[token].item()
            for score, token in zip(out.scores, tokens, strict=True)
        ]
        answers.append((tokens, logprobs))
    return answers


def test_twenty_chat_prompts_greedy_and_logprobs_equal_transformers(
    converted: str, prompts: list[list[int]], reference: list[tuple[list[int], list[float]]]
) -> None:
    engine = make_engine(
        Path(converted), num_blocks=256, block_size=16, max_num_seqs=20, max_num_batched_tokens=2048
    )
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0, logprobs=1)
    for i, prompt in enumerate(prompts):
        engine.add_request(GenerateRequest(f"p{i}", tuple(prompt), params))
    tokens: dict[str, list[int]] = {}
    logprobs: dict[str, list[float | None]] = {}
    while engine.has_unfinished():
        for delta in engine.step():
            tokens.setdefault(delta.request_id, []).extend(delta.token_ids)
            logprobs.setdefault(delta.request_id, []).extend(
                lp.logprob for lp in delta.logprobs or ()
            )
    for i, (want_tokens, want_logprobs) in enumerate(reference):
        assert tokens[f"p{i}"] == want_tokens, CHAT_PROMPTS[i]
        assert logprobs[f"p{i}"] == pytest.approx(want_logprobs, abs=LOGPROB_TOLERANCE)
    assert sum(len(t) for t in tokens.values()) > len(prompts)  # answers, not bare EOS
