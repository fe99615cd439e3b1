"""The pieces of the model build (models/training) that decide what the models learn."""

from __future__ import annotations

import math

import torch

from models.training.chat_pairs import chat_document, function_requests
from models.training.distill_draft import distillation_loss
from models.training.docstrings import module_page
from models.training.documents import Document, cap_bytes, split_of
from models.training.settings import CorpusSettings, DistillSettings, full_settings
from models.training.train_loop import lr_at

SOURCE = '''"""Tiny module."""


def double(x):
    """Return twice x.

    Longer explanation.
    """
    return 2 * x


class Box:
    """Holds one value."""

    def get(self):
        """Return the value."""
        return self.value
'''


def test_split_depends_only_on_the_file_name_and_seed() -> None:
    settings = CorpusSettings()
    names = [f"stdlib/pkg/module_{i}.py" for i in range(2000)]
    splits = [split_of(name, settings) for name in names]
    assert splits == [split_of(name, settings) for name in names]
    test_share = splits.count("test") / len(splits)
    assert abs(test_share - settings.test_percent / 100) < 0.02
    reseeded = CorpusSettings(seed=1)
    assert splits != [split_of(name, reseeded) for name in names]


def test_byte_cap_keeps_whole_documents_within_budget() -> None:
    docs = [Document(f"d{i}", "train", "x" * (100 + i)) for i in range(50)]
    kept = cap_bytes(docs, 1000, seed=0)
    assert sum(d.num_bytes for d in kept) <= 1000
    assert all(d in docs for d in kept)


def test_chat_documents_match_the_shipped_chat_template(tokenizer) -> None:
    (name, request, code), *_ = function_requests(SOURCE, max_chars=500)
    assert name == "double"
    assert request == "Write a Python function named double. Return twice x."
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.bos_token + chat_document(request, code) == rendered + code + "\n"


def test_docstring_page_is_rst_with_a_section_per_documented_object() -> None:
    page = module_page("tiny", SOURCE)
    assert page is not None
    assert page.startswith("tiny\n====\n\nTiny module.\n")
    assert "double(x)\n---------\n\nReturn twice x." in page
    assert "class Box\n---------\n" in page
    assert "Box.get(self)\n" in page


def test_distillation_loss_is_cross_entropy_share_when_student_equals_teacher() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    settings = DistillSettings(temperature=2.0, alpha=0.5)
    same = distillation_loss(logits, logits, ids, settings)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    assert math.isclose(same.item(), 0.5 * ce.item(), rel_tol=1e-5)
    worse = distillation_loss(torch.randn(2, 6, 11), logits, ids, settings)
    assert worse.item() > 0


def test_learning_rate_warms_up_then_decays_to_its_floor() -> None:
    train = full_settings().target_train
    rates = [lr_at(step, train) for step in range(train.steps)]
    peak = rates.index(max(rates))
    assert peak == train.warmup_steps - 1 or peak == train.warmup_steps
    assert math.isclose(max(rates), train.lr, rel_tol=1e-2)
    assert math.isclose(rates[-1], train.lr * train.min_lr_ratio, rel_tol=1e-2)
