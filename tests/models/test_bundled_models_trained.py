"""Training really happened: on held-out snippets (tests/fixtures/models, cut from test-split
files the models never saw) the models predict far better than chance, the target beats its
draft, and each adapter beats the base model on its own domain and changes what it writes."""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel

from tests.models.bundled_paths import ADAPTERS_DIR, TARGET_DIR, load_causal_lm

ADAPTER_DOMAINS = {
    "python-tests": "python-tests",
    "c-headers": "c-headers",
    "docstrings": "docstrings",
}


@torch.no_grad()
def snippet_loss(model: torch.nn.Module, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    return model(input_ids=ids, labels=ids).loss.item()


def test_target_loss_is_far_below_uniform_and_below_draft(
    target, draft, tokenizer, fixture_domains
) -> None:
    text = fixture_domains["python"]
    uniform = math.log(target.config.vocab_size)
    target_loss = snippet_loss(target, tokenizer, text)
    draft_loss = snippet_loss(draft, tokenizer, text)
    assert target_loss < 0.5 * uniform
    assert draft_loss < 0.6 * uniform
    assert target_loss < draft_loss


@pytest.mark.parametrize("name", sorted(ADAPTER_DOMAINS))
def test_adapter_lowers_loss_on_its_own_domain(name: str, tokenizer, fixture_domains) -> None:
    text = fixture_domains[ADAPTER_DOMAINS[name]]
    base = load_causal_lm(TARGET_DIR)
    base_loss = snippet_loss(base, tokenizer, text)
    tuned = PeftModel.from_pretrained(base, ADAPTERS_DIR / name).eval()
    assert snippet_loss(tuned, tokenizer, text) < base_loss - 0.1


def test_c_headers_adapter_changes_the_greedy_completion(target, tokenizer) -> None:
    ids = tokenizer("#include <stdint.h>", return_tensors="pt")
    base_out = target.generate(**ids, max_new_tokens=16, do_sample=False)
    tuned = PeftModel.from_pretrained(load_causal_lm(TARGET_DIR), ADAPTERS_DIR / "c-headers")
    tuned_out = tuned.eval().generate(**ids, max_new_tokens=16, do_sample=False)
    assert not torch.equal(base_out, tuned_out)
