"""Helpers for structured-output tests: a served model with a tokenizer, runs that keep
finish reasons, the xgrammar oracle as a transformers LogitsProcessor, random schemas."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr
from transformers import AutoTokenizer, LogitsProcessor

from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.structured.grammars import build_grammar
from workers.structured.spec import StructuredOutput


@dataclass
class Sample:
    """One sample's output as a caller sees it."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    num_drafted: int = 0
    num_accepted: int = 0


def run_samples(engine: LLMEngine, specs: list[GenerateRequest]) -> dict[str, list[Sample]]:
    """Each request's samples, by sample index, run to completion."""
    samples: dict[str, dict[int, Sample]] = {s.request_id: {} for s in specs}
    for spec in specs:
        engine.add_request(spec)
    while engine.has_unfinished():
        for delta in engine.step():
            sample = samples[delta.request_id].setdefault(delta.index, Sample())
            sample.token_ids += delta.token_ids
            sample.num_drafted = delta.num_drafted_tokens
            sample.num_accepted = delta.num_accepted_tokens
            if delta.finish_reason is not None:
                sample.finish_reason = delta.finish_reason.value
    return {rid: [out[i] for i in sorted(out)] for rid, out in samples.items()}


class GrammarMask(LogitsProcessor):
    """The oracle: xgrammar's own matcher masking transformers' scores at every step (one
    prompt), compiled here from the tokenizer independently of the engine."""

    def __init__(self, model_dir: str, spec: StructuredOutput, vocab_size: int, eos: int) -> None:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        compiled = xgr.GrammarCompiler(info).compile_grammar(build_grammar(spec))
        self.matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=[eos])
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.prompt_len: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        elif not self.matcher.is_terminated():
            assert self.matcher.accept_token(int(input_ids[0, -1]))
        masked = scores.clone()
        self.matcher.fill_next_token_bitmask(self.bitmask)
        xgr.apply_token_bitmask_inplace(masked, self.bitmask.to(masked.device))
        return masked


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """An object schema: string (bounded by a pattern), integer (bounded), number, boolean, enum
    and array properties, a required list and, above depth 1, nested objects."""
    props: dict[str, Any] = {}
    for i in range(rng.randint(1, 4)):
        kinds = ["string", "integer", "number", "boolean", "enum", "array"]
        if depth < 1:
            kinds.append("object")
        kind = rng.choice(kinds)
        name = f"{kind[:3]}_{i}"
        if kind == "string":
            # ASCII by pattern: xgrammar 0.2.9 lets single-byte tokens form overlong UTF-8
            # inside strings (E0 85 97), which no JSON parser accepts.
            props[name] = {"type": "string", "pattern": f"^[A-Za-z0-9 _]{{0,{rng.randint(1, 6)}}}$"}
        elif kind == "integer":
            props[name] = {"type": "integer", "minimum": -50, "maximum": rng.randint(0, 500)}
        elif kind == "number":
            props[name] = {"type": "number", "minimum": 0, "maximum": 10}
        elif kind == "boolean":
            props[name] = {"type": "boolean"}
        elif kind == "enum":
            props[name] = {"enum": rng.sample(["red", "green", "blue", "a b", 'q"t', 7], 3)}
        elif kind == "array":
            items: list[dict[str, Any]] = [
                {"type": "boolean"},
                {"enum": ["x", "y"]},
                {"type": "integer"},
            ]
            item = rng.choice(items)
            if item.get("type") == "integer":
                item = {**item, "minimum": 0, "maximum": 9}
            props[name] = {"type": "array", "items": item, "maxItems": rng.randint(1, 3)}
        else:
            props[name] = random_schema(rng, depth + 1)
    required = [n for n in props if rng.random() < 0.6]
    return {"type": "object", "properties": props, "required": required}
