"""Constrained requests under speculative decoding, batched with free ones: drafts the
grammar rejects end the accepted run, output stays what plain decoding gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from transformers import AutoTokenizer, LogitsProcessorList

from tests.factories import decode_text, hf_greedy, make_engine, make_tiny_model
from tests.workers.structured.factories import GrammarMask, run_samples
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.proposers import Proposal
from workers.structured.spec import StructuredOutput

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 99},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["alpha", "beta"]},
    },
    "required": ["id", "ok", "kind"],
}
CONSTRAINT = StructuredOutput.json_schema(SCHEMA)
SPEC: dict[str, Any] = dict(num_speculative_tokens=4, draft_cost_ratio=0.05)


@pytest.fixture(scope="module")
def prompts(chat_model_dir: Path) -> list[tuple[int, ...]]:
    tokenizer = AutoTokenizer.from_pretrained(str(chat_model_dir))
    texts = ["hello world", "def add(a, b):", "the quick brown fox jumps"]
    return [tuple(tokenizer(t)["input_ids"]) for t in texts]


@pytest.fixture(scope="module")
def expected(chat_model_dir: Path, chat_hf, prompts) -> dict[str, list[int]]:
    out = {}
    for i, ids in enumerate(prompts):
        mask = GrammarMask(str(chat_model_dir), CONSTRAINT, 300, 2)
        out[f"c{i}"] = hf_greedy(
            chat_hf, list(ids), 60, logits_processor=LogitsProcessorList([mask])
        )
        out[f"f{i}"] = hf_greedy(chat_hf, list(ids), 16)
    return out


@pytest.mark.parametrize("proposer", ["ngram", "self-draft", "random-draft", "oracle-remote"])
def test_mixed_batch_under_speculation_equals_plain_decoding(
    chat_model_dir: Path, tmp_path: Path, prompts, expected, proposer: str
) -> None:
    draft = {
        "self-draft": chat_model_dir,
        "random-draft": make_tiny_model(
            tmp_path / "d", seed=5, num_hidden_layers=1, vocab_size=300
        ),
    }.get(proposer)
    engine = make_engine(
        chat_model_dir,
        spec=SpecConfig(draft_model=str(draft) if draft else None, draft_num_blocks=64, **SPEC),
    )
    mode = {"ngram": SpeculationMode.NGRAM, "oracle-remote": SpeculationMode.REMOTE}.get(
        proposer, SpeculationMode.COLOCATED
    )
    if proposer == "oracle-remote":
        # Proposes the known constrained continuation, with an ungrammatical token at every
        # third position: accepted runs, and runs the grammar ends.
        def propose(queries):
            out = []
            for q in queries:
                full = next(
                    list(p) + expected[f"c{i}"]
                    for i, p in enumerate(prompts)
                    if list(q.token_ids[: len(p)]) == list(p)
                )
                ahead = full[len(q.token_ids) : len(q.token_ids) + q.k]
                out.append(
                    Proposal(tuple(t if j % 3 < 2 else 1 for j, t in enumerate(ahead)) or (1,))
                )
            return out

        engine.attach_remote_draft(propose)
    greedy = SamplingParams(max_tokens=60, temperature=0, structured=CONSTRAINT)
    sampled = SamplingParams(max_tokens=60, temperature=1.0, seed=11, structured=CONSTRAINT)
    free = SamplingParams(max_tokens=16, temperature=0)
    specs = []
    for i, ids in enumerate(prompts):
        specs.append(GenerateRequest(f"c{i}", ids, greedy, speculation=mode))
        specs.append(GenerateRequest(f"s{i}", ids, sampled, speculation=mode))
        specs.append(GenerateRequest(f"f{i}", ids, free, speculation=mode))
    out = run_samples(engine, specs)
    tokenizer = AutoTokenizer.from_pretrained(str(chat_model_dir))
    for i in range(len(prompts)):
        assert out[f"c{i}"][0].token_ids == expected[f"c{i}"]
        assert out[f"f{i}"][0].token_ids == expected[f"f{i}"]
        sample = out[f"s{i}"][0]
        assert sample.finish_reason == "stop"
        jsonschema.validate(json.loads(decode_text(tokenizer, sample.token_ids)), SCHEMA)
    constrained = [out[f"{k}{i}"][0] for k in "cs" for i in range(len(prompts))]
    assert sum(s.num_drafted for s in constrained) > 0  # speculation did run on them
    if proposer == "oracle-remote":  # an unconstrained draft rarely agrees with the grammar
        assert sum(s.num_accepted for s in constrained) > 0
