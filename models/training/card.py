"""Render models/README.md (the model card) from metrics.json, build_report.json and the corpus
manifest. Every number in the card comes from those files; none is typed in by hand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from models.smollm2.card import real_model_section, replace_section
from models.training.card_text import HEADER, USAGE, tokenizer_section
from models.training.manifest import read_json_gz
from models.training.settings import BuildSettings


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:.2f} MB"


def _table(head: list[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def models_section(metrics: dict, report: dict, settings: BuildSettings) -> str:
    rows = []
    for name, part in ((settings.target_name, "target"), (settings.draft_name, "draft")):
        shape = report[part]["shape"]
        size = metrics["sizes"][name]
        dims = (
            f"{shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
            f"MLP {shape['intermediate_size']}, {shape['num_attention_heads']} heads / "
            f"{shape['num_key_value_heads']} KV heads"
        )
        rows.append([f"`{name}`", f"{size['parameters']:,}", _mb(size["weight_bytes"]), dims])
    for spec in settings.adapters:
        size = metrics["sizes"][f"adapters/{spec.name}"]
        dims = f"LoRA r={spec.rank}, alpha={spec.alpha} on q,k,v,o,gate,up,down"
        rows.append(
            [f"`adapters/{spec.name}`", f"{size['parameters']:,}", _mb(size["weight_bytes"]), dims]
        )
    total = metrics["sizes"]["models/ (all files)"]["directory_bytes"]
    return (
        "## Models\n\n"
        f"Vocabulary {settings.vocab_size} (byte-level BPE), tied embeddings, RoPE theta "
        f"{settings.rope_theta:g}, max_position_embeddings {settings.max_position_embeddings} "
        f"(trained on {settings.target_train.seq_len}-token windows). Weights are bf16.\n\n"
        + _table(["model", "parameters", "weights", "shape"], rows)
        + f"\nAll files under models/: {_mb(total)}.\n"
    )


def top_sources(files: list[list], count: int) -> str:
    """The `count` directories (two levels down) that gave the most bytes, with their share."""
    by_dir: dict[str, int] = {}
    for source, num_bytes, _split in files:
        key = "/".join(source.split("/")[:2])
        by_dir[key] = by_dir.get(key, 0) + num_bytes
    total = sum(by_dir.values()) or 1
    top = sorted(by_dir.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"`{name}` {100 * b / total:.0f}%" for name, b in top)


def fallback_note(manifest: dict) -> str:
    """Say so when the stdlib test suite was too small and installed packages' tests filled in."""
    trees = manifest["domains"].get("python-tests", {}).get("trees", [])
    borrowed = [t for t in trees if t["label"] != "stdlib" and t["files_used"]]
    if not borrowed:
        return ""
    stdlib = next((t for t in trees if t["label"] == "stdlib"), {"files_matched": 0})
    return (
        f"\nThe training machine's standard library held only {stdlib['files_matched']} test "
        "files (Debian-based systems ship most of the test suite as a separate package), so "
        "`python-tests` is mostly the test modules of the Python packages installed beside it.\n"
    )


def corpus_section(manifest: dict, report: dict, files: dict[str, list]) -> str:
    rows = []
    for name, domain in manifest["domains"].items():
        trees = ", ".join(
            f"`{t['root']}` ({t['files_used']} files)" for t in domain["trees"] if t["files_used"]
        )
        splits = domain["splits"]
        tokens = report["tokens"].get(name, {})
        rows.append(
            [
                f"`{name}`",
                domain["description"],
                trees or "derived from `python` (train files)",
                _mb(splits["train"]["bytes"]),
                _mb(splits["valid"]["bytes"]),
                _mb(splits["test"]["bytes"]),
                f"{tokens['train']:,}" if tokens else "in python's",
            ]
        )
    built, split = manifest["built_with"], manifest["settings"]
    return (
        "## Corpus\n\n"
        f"Read on the training machine (Python {built['python']}, {built['platform']}). "
        f"Files are split by name (sha256 of seed and path): {split['test_percent']}% test, "
        f"{split['valid_percent']}% validation. The `chat` "
        "documents turn documented stdlib functions of the train split into one chat turn "
        '("Write a Python function named f. <docstring summary>" -> the function), so the '
        "chat template means something to the model.\n\n"
        + _table(["domain", "what", "read from", "train", "valid", "test", "train tokens"], rows)
        + fallback_note(manifest)
        + "\nLargest contributors per adapter domain (share of bytes): "
        + "; ".join(
            f"`{name}`: {top_sources(files[name], 5)}"
            for name in ("python-tests", "c-headers", "docstrings")
            if name in files
        )
        + ".\n"
    )


def training_section(report: dict, settings: BuildSettings) -> str:
    hw = report["hardware"]
    rows = []
    parts = [("target", report["target"]), ("draft (distilled)", report["draft"])]
    parts += [(f"adapter `{n}`", r) for n, r in report["adapters"].items()]
    for name, part in parts:
        rows.append(
            [
                name,
                part["steps_done"],
                f"{part['tokens_seen']:,}",
                f"{part['seconds']:.0f} s",
                part["best_step"],
                f"{part['best_valid_loss']:.3f}",
            ]
        )
    d = settings.distill
    return (
        "## Training\n\n"
        f"Hardware: {hw['device']}, {hw['cpu_count']} CPU cores; Python {hw['python']}, torch "
        f"{hw['torch']}, transformers {hw['transformers']}, peft {hw['peft']}. AdamW, warmup "
        "then cosine decay, bf16 autocast; the checkpoint kept is the one with the lowest "
        "validation loss. The draft learns from the target with "
        f"{d.alpha:g} * T^2 * KL(teacher/T || student/T) + {1 - d.alpha:g} * cross-entropy, "
        f"T = {d.temperature:g}. Stage times (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in report["stage_seconds"].items())
        + ".\n\n"
        + _table(["run", "steps", "training tokens", "time", "best step", "best valid loss"], rows)
    )


def quality_section(metrics: dict) -> str:
    ppl = metrics["perplexity"]
    held = metrics["heldout"]
    rows = [[name, f"{r['loss']:.3f}", f"{r['perplexity']:.2f}"] for name, r in ppl.items()]
    adapters = [
        [
            f"`{n}`",
            f"`{r['domain']}`",
            r["heldout_tokens"],
            f"{r['base_loss']:.3f}",
            f"{r['adapter_loss']:.3f}",
            f"{r['loss_reduction']:.3f}",
        ]
        for n, r in metrics["adapters"].items()
    ]
    spec = metrics["speculative"]
    quant = [
        [
            q["variant"],
            _mb(q["weight_bytes"]),
            f"{q['weight_ratio_vs_bf16']:.2f}",
            f"{q['perplexity']:.3f}",
            f"{100 * q['perplexity_change_vs_bf16']:+.2f}%",
        ]
        for q in metrics["quantization"]
    ]
    return (
        "## Held-out quality\n\n"
        f"On {held['python_tokens']:,} tokens of held-out stdlib files ({held['seq_len']}-token "
        "windows, `heldout/python.json.gz`), loss in nats per token:\n\n"
        + _table(["model", "loss", "perplexity"], rows)
        + "\nAdapters, each on held-out files of its own domain, loss without and with it:\n\n"
        + _table(
            ["adapter", "domain", "tokens", "base loss", "with adapter", "reduction"], adapters
        )
        + "\n### Speculative decoding\n\n"
        f"Greedy, k = {spec['k']}, {spec['prompts']} held-out prompts of 64 tokens, "
        f"{spec['new_tokens_per_prompt']} new tokens each (EOS suppressed): the draft's "
        f"acceptance rate is **{spec['acceptance_rate']:.3f}** ({spec['accepted']} of "
        f"{spec['drafted']} drafted tokens), {spec['tokens_per_target_step']:.2f} tokens per "
        "target forward pass.\n\n"
        "### Quantization (bitsandbytes, on CPU)\n\n"
        "Weight memory counts every tensor once (quantised weights with their scales; the "
        "embedding, tied with the output layer, stays bf16):\n\n"
        + _table(["variant", "weights", "vs bf16", "perplexity", "perplexity change"], quant)
    )


def samples_section(metrics: dict) -> str:
    samples = metrics["samples"]
    out = [f"## Samples\n\nSame prompts for every model; {samples['decoding']}.\n"]
    for i, prompt in enumerate(samples["prompts"]):
        out.append(f"### Prompt {i + 1}: `{prompt}`\n")
        for name, completions in samples["completions"].items():
            label = "base model" if name == "base" else f"adapter `{name}`"
            text = (prompt + completions[i]).replace("```", "` ` `")
            out.append(f"{label}:\n\n```\n{text}\n```\n")
    chat = samples["chat"]
    out.append(
        "### Chat template\n\n"
        f"User: {chat['request']}\n\nAssistant (base model):\n\n```\n{chat['reply']}\n```\n"
    )
    return "\n".join(out)


def evaluation_footer(metrics: dict) -> str:
    env = metrics["evaluated_with"]
    return (
        "## How this was measured\n\n"
        f"`python -m models.training.evaluate`, {env['seconds']:.0f} s on {env['processor']} "
        f"CPU ({env['torch_threads']} threads), torch {env['torch']}, transformers "
        f"{env['transformers']}, peft {env['peft']}, bitsandbytes {env['bitsandbytes']}.\n"
    )


def write_card(models_dir: Path, settings: BuildSettings) -> None:
    metrics = json.loads((models_dir / "metrics.json").read_text())
    report = json.loads((models_dir / "build_report.json").read_text())
    manifest = json.loads((models_dir / "corpus_manifest.json").read_text())
    files = read_json_gz(models_dir / manifest["file_list"])
    header = HEADER.format(
        target=settings.target_name,
        draft=settings.draft_name,
        build_minutes=sum(report["stage_seconds"].values()) / 60,
        device=report["hardware"]["device"],
    )
    sections = [
        header,
        models_section(metrics, report, settings),
        tokenizer_section(settings),
        corpus_section(manifest, report, files),
        training_section(report, settings),
        quality_section(metrics),
        samples_section(metrics),
        USAGE.format(target=settings.target_name, draft=settings.draft_name),
        evaluation_footer(metrics),
    ]
    # the real model's section is rendered from its own files (models/smollm2/card.py)
    text = replace_section("\n".join(sections), real_model_section())
    (models_dir / "README.md").write_text(text)
