"""Structured outputs in the engine: outputs follow the grammar, greedy equals transformers
with the same xgrammar mask, free rows of a mixed batch are untouched."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
import xgrammar as xgr
from transformers import AutoTokenizer, LogitsProcessorList

from tests.factories import hf_greedy, make_engine
from tests.lora_factories import make_lora_engine, make_peft_adapter
from tests.workers.structured.factories import GrammarMask, random_schema, run_samples
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams
from workers.structured.decoding import StepMask
from workers.structured.spec import StructuredOutput

EOS = 2
VOCAB = 300
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,5}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    },
    "required": ["name", "age"],
}


def matches_schema(text: str) -> bool:
    """True when `text` is JSON valid against SCHEMA (jsonschema raises otherwise)."""
    jsonschema.validate(json.loads(text), SCHEMA)
    return True


CONSTRAINTS = {
    "json_schema": StructuredOutput.json_schema(SCHEMA),
    "regex": StructuredOutput("regex", r"[a-f]{2,4}-[0-9]{1,3}"),
    "choice": StructuredOutput.choice(["yes", "no", "maybe so"]),
    "grammar": StructuredOutput("grammar", 'root ::= "(" [0-9]{1,3} ("+" [0-9]{1,3}){0,3} ")"'),
    "json": StructuredOutput("json"),
}


@pytest.fixture(scope="module")
def tokenizer(chat_model_dir: Path):
    return AutoTokenizer.from_pretrained(str(chat_model_dir))


def prompt(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text)["input_ids"])


def oracle(chat_model_dir: Path, chat_hf, ids: tuple[int, ...], spec, max_tokens: int):
    mask = GrammarMask(str(chat_model_dir), spec, VOCAB, EOS)
    return hf_greedy(chat_hf, list(ids), max_tokens, logits_processor=LogitsProcessorList([mask]))


def text_of(tokenizer, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)


def test_greedy_equals_transformers_with_the_same_mask_in_a_mixed_batch(
    chat_model_dir: Path, chat_hf, tokenizer
) -> None:
    ids = prompt(tokenizer, "hello world")
    engine = make_engine(chat_model_dir)
    greedy = {
        k: SamplingParams(max_tokens=80, temperature=0, structured=v)
        for k, v in CONSTRAINTS.items()
        if k != "json"
    }
    specs = [GenerateRequest(k, ids, p) for k, p in greedy.items()]
    specs.append(GenerateRequest("free", ids, SamplingParams(max_tokens=12, temperature=0)))
    out = run_samples(engine, specs)
    for name, params in greedy.items():
        expected = oracle(chat_model_dir, chat_hf, ids, params.structured, 80)
        assert out[name][0].token_ids == expected, name
        assert out[name][0].finish_reason == "stop", name
    assert out["free"][0].token_ids == hf_greedy(chat_hf, list(ids), 12)
    unconstrained = hf_greedy(chat_hf, list(ids), 80)
    assert out["json_schema"][0].token_ids != unconstrained  # the mask did something
    assert engine.structured.num_matchers == 0  # released with their requests


def test_sampled_outputs_match_regex_choice_and_grammar_with_n_samples(
    chat_model_dir: Path, tokenizer
) -> None:
    engine = make_engine(chat_model_dir)
    ids = prompt(tokenizer, "the quick brown fox")
    specs = [
        GenerateRequest(
            name, ids, SamplingParams(max_tokens=60, temperature=1.0, seed=7, n=4, structured=c)
        )
        for name, c in CONSTRAINTS.items()
    ]
    out = run_samples(engine, specs)
    checks = {
        "regex": lambda t: re.fullmatch(r"[a-f]{2,4}-[0-9]{1,3}", t),
        "choice": lambda t: t in ("yes", "no", "maybe so"),
        "grammar": lambda t: re.fullmatch(r"\([0-9]{1,3}(\+[0-9]{1,3}){0,3}\)", t),
        "json_schema": matches_schema,
    }
    for name, check in checks.items():
        samples = out[name]
        assert len(samples) == 4
        texts = [text_of(tokenizer, s.token_ids) for s in samples]
        assert all(s.finish_reason == "stop" for s in samples), (name, texts)
        assert all(check(t) for t in texts), (name, texts)
        if name in ("regex", "grammar"):
            assert len(set(texts)) > 1, texts  # each sample its own matcher and draws
    # Unbounded keys and strings: a random model often runs out of tokens inside one.
    for sample in out["json"]:
        text = text_of(tokenizer, sample.token_ids)
        if sample.finish_reason == "stop":
            assert isinstance(json.loads(text), dict), text
        else:
            assert sample.finish_reason == "length" and text.startswith("{"), text
    assert any(s.finish_reason == "stop" for s in out["json"])


def test_fifty_random_json_schemas_all_validate(chat_model_dir: Path, tokenizer) -> None:
    rng = random.Random(16)
    schemas = [random_schema(rng) for _ in range(50)]
    engine = make_engine(chat_model_dir, max_num_seqs=50)
    ids = prompt(tokenizer, "hi")
    specs = [
        GenerateRequest(
            f"s{i}",
            ids,
            SamplingParams(
                max_tokens=160, temperature=0.8, seed=i, structured=StructuredOutput.json_schema(s)
            ),
        )
        for i, s in enumerate(schemas)
    ]
    out = run_samples(engine, specs)
    stopped = 0
    for i, schema in enumerate(schemas):
        sample = out[f"s{i}"][0]
        text = text_of(tokenizer, sample.token_ids)
        if sample.finish_reason == "stop":
            stopped += 1
            jsonschema.validate(json.loads(text), schema)
        else:  # cut by max_tokens: what there is must be a prefix the grammar accepts
            assert sample.finish_reason == "length"
            assert _is_prefix(chat_model_dir, schema, sample.token_ids)
    assert stopped >= 45


def _is_prefix(model_dir: Path, schema: dict, tokens: list[int]) -> bool:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=VOCAB)
    matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(info).compile_json_schema(json.dumps(schema)))
    return all(matcher.accept_token(t) for t in tokens)


def test_constrained_request_with_an_adapter_equals_peft_with_the_mask(
    chat_model_dir: Path, tmp_path: Path, tokenizer
) -> None:
    from peft import PeftModel

    from tests.factories import load_hf

    adapter = make_peft_adapter(chat_model_dir, tmp_path / "root" / "a1", seed=3, rank=4)
    engine = make_lora_engine(chat_model_dir, tmp_path / "root")
    engine.load_adapter("a1", str(adapter))
    ids = prompt(tokenizer, "hello")
    spec = CONSTRAINTS["json_schema"]
    params = SamplingParams(max_tokens=40, temperature=0, structured=spec)
    out = run_samples(
        engine,
        [
            GenerateRequest("lora", ids, params, adapter="a1"),
            GenerateRequest("base", ids, params),
        ],
    )
    peft_model = PeftModel.from_pretrained(load_hf(chat_model_dir), adapter).eval()
    assert out["lora"][0].token_ids == oracle(chat_model_dir, peft_model, ids, spec, 40)
    assert out["base"][0].token_ids == oracle(
        chat_model_dir, load_hf(chat_model_dir), ids, spec, 40
    )
    assert out["lora"][0].token_ids != out["base"][0].token_ids


def test_unsupported_constraints_are_refused_before_running(chat_model_dir: Path) -> None:
    engine = make_engine(chat_model_dir)
    bad = {
        StructuredOutput.json_schema({"type": "string", "pattern": "(?<=a)b"}): "Lookbehind",
        StructuredOutput.json_schema({"type": "wat"}): 'Unsupported type "wat"',
        StructuredOutput("regex", "a("): "parenthesis is not closed",
        StructuredOutput("grammar", "root ::= "): "EBNF parser error",
    }
    for spec, reason in bad.items():
        request = GenerateRequest("x", (5, 6), SamplingParams(structured=spec))
        with pytest.raises(ValueError, match=re.escape(reason)):
            engine.validate(request)
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(beam_width=2), "beam_width"),
        (dict(ignore_eos=True), "ignore_eos"),
        (dict(min_tokens=2, max_tokens=4), "min_tokens"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValueError, match=f"^{field}"):
            SamplingParams(structured=CONSTRAINTS["regex"], **kwargs)


def test_aborted_and_finished_requests_release_their_matchers(
    chat_model_dir: Path, tokenizer
) -> None:
    engine = make_engine(chat_model_dir)
    ids = prompt(tokenizer, "hello")
    params = SamplingParams(max_tokens=30, temperature=1.0, n=3, structured=CONSTRAINTS["json"])
    engine.add_request(GenerateRequest("a", ids, params))
    engine.add_request(GenerateRequest("b", ids, params))
    for _ in range(3):
        engine.step()
    assert engine.structured.num_matchers == 6
    engine.abort("a")
    assert engine.structured.num_matchers == 3
    while engine.has_unfinished():
        engine.step()
    assert engine.structured.num_matchers == 0


def test_identical_constraints_compile_once(chat_model_dir: Path) -> None:
    engine = make_engine(chat_model_dir)
    compilation = engine.structured.compilation
    first = compilation.submit(StructuredOutput.json_schema(SCHEMA))
    assert compilation.submit(StructuredOutput.json_schema(dict(SCHEMA))) is first
    assert compilation.submit(CONSTRAINTS["regex"]) is not first


def test_step_mask_unpacks_bits_as_xgrammar_applies_them() -> None:
    g = torch.Generator().manual_seed(0)
    bitmask = torch.randint(-(2**31), 2**31 - 1, (3, 10), dtype=torch.int32, generator=g)
    logits = torch.zeros(3, VOCAB)
    xgr.apply_token_bitmask_inplace(logits, bitmask)
    assert torch.equal(StepMask(bitmask, 2).allowed(VOCAB), logits == 0)
