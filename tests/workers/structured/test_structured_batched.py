"""Constrained rows go through the batched sampler's bitmask hook: a seeded constrained
request gives the same output next to free and other constrained rows as alone."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from tests.factories import make_engine
from tests.workers.structured.factories import run_samples
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams
from workers.structured.spec import StructuredOutput

REGEX = StructuredOutput("regex", r"[a-f]{2,4}-[0-9]{1,3}")
CHOICE = StructuredOutput.choice(["yes", "no", "maybe so"])


def test_seeded_constrained_rows_equal_themselves_alone(chat_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(chat_model_dir))
    ids = tuple(tokenizer("the quick brown fox")["input_ids"])
    specs = [
        GenerateRequest("regex", ids, SamplingParams(max_tokens=40, seed=3, structured=REGEX)),
        GenerateRequest(
            "choice", ids, SamplingParams(max_tokens=40, seed=4, n=2, logprobs=2, structured=CHOICE)
        ),
        GenerateRequest("free", ids, SamplingParams(max_tokens=40, seed=5, top_k=20)),
        GenerateRequest("greedy", ids, SamplingParams(max_tokens=40, temperature=0)),
    ]
    together = run_samples(make_engine(chat_model_dir), specs)
    for spec in specs:
        alone = run_samples(make_engine(chat_model_dir), [spec])
        got = [s.token_ids for s in together[spec.request_id]]
        assert got == [s.token_ids for s in alone[spec.request_id]], spec.request_id
    assert all(s.finish_reason == "stop" for s in together["regex"] + together["choice"])
