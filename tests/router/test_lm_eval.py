"""lm-evaluation-harness (`local-completions`) against Tandem over real HTTP, on local task
files: multiple choice and loglikelihood_rolling (echo + logprobs, batched token-id
prompts) and generate_until at batch size 4. Each score is checked against the same
quantity computed from transformers on the same model."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.factories import hf_greedy, load_hf, make_engine
from tests.router.local_app import MODEL, make_local_app
from workers.async_engine import AsyncEngine

lm_eval = pytest.importorskip("lm_eval")
uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.timeout(600)

QUESTIONS = [
    ("def add(a, b):", [" return a + b", " pass", " import os"]),
    ("class Stack:", [" def push(self):", "\n", " 42"]),
    ("import os", ["\nimport sys", " = 3", ")"]),
    ("for i in range(", ["10):", "x", " while"]),
    ("x = [1, 2,", [" 3]", " 'a'", " None"]),
]
DOCS = ["def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"]
GEN_PROMPTS = ["def add(a, b):", "class Stack:", "import os", "for i in range(", "x = 1"]


@pytest.fixture(scope="module")
def server(served_model_dir: Path):
    engine = AsyncEngine(make_engine(served_model_dir))
    app = make_local_app(served_model_dir, engine)[0]
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    engine.shutdown()


def write_tasks(root: Path, greedy_targets: list[str]) -> Path:
    data = root / "data"
    data.mkdir()
    rows = [{"q": q, "choices": c, "gold": 0} for q, c in QUESTIONS]
    (data / "mc.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (data / "docs.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in DOCS))
    gen = [{"p": p, "t": t} for p, t in zip(GEN_PROMPTS, greedy_targets, strict=True)]
    (data / "gen.jsonl").write_text("\n".join(json.dumps(r) for r in gen))

    def task(name: str, file: str, body: str) -> None:
        (root / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data / file}\n"
            f"test_split: test\n{body}"
        )

    task(
        "tandem_mc",
        "mc.jsonl",
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{gold}}'\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\n",
    )
    task(
        "tandem_ppl",
        "docs.jsonl",
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n",
    )
    task(
        "tandem_gen",
        "gen.jsonl",
        "output_type: generate_until\ndoc_to_text: '{{p}}'\ndoc_to_target: '{{t}}'\n"
        "target_delimiter: ''\n"
        "generation_kwargs:\n  until: ['<never>']\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n",
    )
    return root


def hf_continuation_logprob(hf, tokenizer, context: str, continuation: str) -> float:
    ctx = tokenizer.encode_text(context, add_special_tokens=False)  # as lm-eval encodes
    whole = tokenizer.encode_text(context + continuation, add_special_tokens=False)
    assert list(whole[: len(ctx)]) == list(ctx)
    with torch.no_grad():
        rows = torch.log_softmax(hf(torch.tensor([list(whole)])).logits[0].float(), -1)
    return sum(float(rows[t - 1, whole[t]]) for t in range(len(ctx), len(whole)))


def hf_greedy_text(hf, tokenizer, prompt: str, max_new: int) -> str:
    """transformers' greedy continuation of the ids lm-eval sends (no special tokens added),
    as text the way the server writes it (special tokens skipped)."""
    ids = list(tokenizer.encode_text(prompt, add_special_tokens=False))
    return tokenizer.decode(hf_greedy(hf, ids, max_new))


def test_lm_eval_scores_equal_transformers(
    server: str, served_model_dir: Path, prompt_tokenizer, tmp_path: Path
) -> None:
    from lm_eval.tasks import TaskManager

    hf = load_hf(served_model_dir)
    targets = [hf_greedy_text(hf, prompt_tokenizer, p, 6) for p in GEN_PROMPTS]
    tasks = write_tasks(tmp_path, targets)
    model_args = (
        f"model={MODEL},base_url={server}/v1/completions,tokenizer={served_model_dir},"
        "tokenizer_backend=huggingface,num_concurrent=2,max_retries=1,max_length=200"
    )
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=model_args,
        tasks=["tandem_mc", "tandem_ppl", "tandem_gen"],
        batch_size=4,
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        bootstrap_iters=0,
    )
    results = results["results"]
    expected_acc = sum(
        max(range(3), key=lambda i: hf_continuation_logprob(hf, prompt_tokenizer, q, c[i])) == 0
        for q, c in QUESTIONS
    ) / len(QUESTIONS)
    assert math.isclose(results["tandem_mc"]["acc,none"], expected_acc)
    doc = DOCS[0]
    ids = list(prompt_tokenizer.encode_text(doc, add_special_tokens=False))
    tok = prompt_tokenizer.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    prefixed = [prefix, *ids]  # one window: the document is shorter than max_length
    with torch.no_grad():
        rows = torch.log_softmax(hf(torch.tensor([prefixed])).logits[0].float(), -1)
    total = sum(float(rows[t - 1, prefixed[t]]) for t in range(1, len(prefixed)))
    words = len(re.split(r"\s+", doc))  # lm-eval's word count
    expected_ppl = math.exp(-total / words)
    assert math.isclose(results["tandem_ppl"]["word_perplexity,none"], expected_ppl, rel_tol=1e-3)
    assert results["tandem_gen"]["exact_match,none"] == 1.0
