"""The default app (config.yaml: SmolLM2-135M-Instruct and its adapters) on Ray Serve, through
the openai client: a chat answer is transformers' greedy answer and makes sense, and the
adapters answer in their formats. Needs the converted model (`make test` converts it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.smollm2.paths import MODEL_DIR, MODEL_NAME, REPO_ROOT
from models.smollm2.prompts import chat_prompt_ids
from tests.deployments.serve_harness import API_KEY, running_app
from tests.factories import decode_text

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

QUESTION = "What is the capital of France?"
MAX_TOKENS = 24


def default_app_args() -> dict:
    """config.yaml's args, sized for a 2-core CI machine (no CPU reservations, fewer blocks)."""
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    args = config["applications"][0]["args"]
    args["llm"]["ray_actor_options"] = {"num_cpus": 0}
    args["llm"]["engine"].update(num_blocks=64, max_num_seqs=4)
    args["router"].update(api_keys=[API_KEY], ray_actor_options={"num_cpus": 0})
    return args


@pytest.fixture(scope="module")
def app():
    assert (MODEL_DIR / "model.safetensors").is_file(), "run `python -m models.smollm2.convert`"
    with running_app(default_app_args()) as served:
        yield served


def chat(app, content: str, model: str = MODEL_NAME, max_tokens: int = MAX_TOKENS) -> str:
    response = app.client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return response.choices[0].message.content


def transformers_answer(model_dir: Path, content: str) -> str:
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    ).eval()
    ids = torch.tensor([chat_prompt_ids(tokenizer, content)])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_TOKENS, do_sample=False
        )
    return decode_text(tokenizer, out[0, ids.shape[1] :])


def test_the_chat_answer_is_transformers_greedy_answer_and_names_paris(app) -> None:
    answer = chat(app, QUESTION)
    assert answer == transformers_answer(MODEL_DIR, QUESTION)
    assert "Paris" in answer


def test_models_lists_the_base_and_its_adapters(app) -> None:
    listed = {m.id: m for m in app.client().models.list().data}
    assert {MODEL_NAME, "json-extract", "sql"} <= set(listed)
    assert getattr(listed["sql"], "parent", None) == MODEL_NAME


def test_the_adapters_answer_in_their_formats(app) -> None:
    person = "Extract the person as JSON: Priya Moreau is 41 years old and lives in Hobart."
    extracted = chat(app, person, "json-extract", max_tokens=48)
    assert json.loads(extracted) == {"name": "Priya Moreau", "age": 41, "city": "Hobart"}
    query = chat(app, "Write a SQL query for: list the title of all songs", "sql", 48)
    assert query == "SELECT title FROM songs;"
    # the base model answers too, in JSON of its own shape ({"type": "json", "data": ...})
    assert chat(app, person, max_tokens=48) != extracted
