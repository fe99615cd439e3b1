"""Workload files: validation with useful errors, seeded planning that follows the mixes, and
the request bodies that come out."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from loadtest.bodies import request_body, request_path
from loadtest.distributions import Fixed, LogNormal, Uniform
from loadtest.plan import RequestPlanner
from loadtest.prompts import PromptFactory
from loadtest.workload import Workload, load_workload

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "models" / "tandem-code-8m" / "tokenizer.json"


def _workload(**fields: object) -> Workload:
    return Workload.model_validate(fields)


@pytest.mark.parametrize("path", sorted((REPO / "loadtest" / "workloads").glob("*.yaml")))
def test_shipped_workloads_are_valid(path: Path) -> None:
    assert load_workload(path).name == path.stem


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoints": {"embeddings": 1}}, "unknown endpoints ['embeddings']"),
        ({"adapters": {"base": 0}}, "adapters needs non-negative weights with a positive sum"),
        ({"prompt_tokens": {"kind": "uniform", "low": 1, "high": 2, "min": 9, "max": 3}},
         "min (9) is above max (3)"),
        ({"shape": {"kind": "spike", "base_users": 1, "spike_users": 5, "spike_at_s": 50,
                    "spike_s": 20, "duration_s": 60}}, "the spike ends after the run"),
        ({"shape": {"kind": "wave"}}, "does not match any of the expected tags"),
        ({"sampling": {"sampled_share": 1.5}}, "less than or equal to 1"),
        ({"speculaton": {"share": 0.5}}, "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_workloads_say_what_is_wrong(fields: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(fields))
    with pytest.raises(ValueError, match=r"bad\.yaml is invalid") as info:
        load_workload(path)
    assert message in str(info.value)


def test_distributions_stay_within_their_bounds() -> None:
    rng = random.Random(0)
    tail = LogNormal(kind="lognormal", median=100, sigma=2.0, min=5, max=300)
    samples = [tail.sample(rng) for _ in range(2000)]
    assert min(samples) == 5 and max(samples) == 300
    assert {Uniform(kind="uniform", low=3, high=5).sample(rng) for _ in range(200)} == {3, 4, 5}
    assert Fixed(kind="fixed", value=7).sample(rng) == 7


def test_planner_follows_the_mixes_and_is_reproducible() -> None:
    workload = _workload(
        adapters={"base": 3, "sql": 1},
        endpoints={"chat": 1, "completions": 1},
        stream_share=0.5,
        sampling={"sampled_share": 0.25, "temperature": 0.7, "top_p": 0.9},
        output_tokens={"kind": "fixed", "value": 16},
    )
    plans = _plans(workload, 4000)
    adapters = Counter(p.adapter for p in plans)
    assert abs(adapters["sql"] / len(plans) - 0.25) < 0.03
    assert {p.model for p in plans if p.adapter == "base"} == {"the-base"}
    assert {p.model for p in plans if p.adapter == "sql"} == {"sql"}
    sampled = [p for p in plans if p.temperature > 0]
    assert abs(len(sampled) / len(plans) - 0.25) < 0.03
    assert {(p.temperature, p.top_p) for p in sampled} == {(0.7, 0.9)}
    assert abs(sum(p.stream for p in plans) / len(plans) - 0.5) < 0.03
    assert {p.max_tokens for p in plans} == {16}
    assert [p.prompt for p in _plans(workload, 20)] == [p.prompt for p in plans[:20]]
    assert len({p.prompt for p in plans}) == len(plans)  # no shared prefixes between requests


def _plans(workload: Workload, n: int) -> list:
    planner = RequestPlanner(workload, "the-base")
    return [planner.next() for _ in range(n)]


def test_prompt_lengths_are_exact_with_the_models_tokenizer() -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    prompts = PromptFactory(random.Random(1), TOKENIZER)
    for n in (1, 8, 64, 300):
        counted = len(tokenizer.encode(prompts.prompt(n), add_special_tokens=False).ids)
        assert abs(counted - n) <= 2


def test_bodies_for_chat_and_completions() -> None:
    workload = _workload(stream_share=1.0, endpoints={"chat": 1})
    chat = RequestPlanner(workload, "m").next()
    body = request_body(chat, workload)
    assert request_path(chat) == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": chat.prompt}]
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and "speculation" not in body

    whole = _workload(stream_share=0.0, endpoints={"completions": 1}, ignore_eos=False,
                      speculation={"share": 1.0, "body_field": "speculative"})  # fmt: skip
    plan = RequestPlanner(whole, "m").next()
    body = request_body(plan, whole)
    assert request_path(plan) == "/v1/completions" and body["prompt"] == plan.prompt
    assert "stream_options" not in body and "ignore_eos" not in body
    assert body["speculative"] is True
