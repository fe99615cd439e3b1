"""The single rebuild command: `python -m models.training [--smoke] [--out DIR] [--work DIR]`.

Runs corpus -> tokenizer -> token streams -> target -> draft -> adapters and writes, under
--out, the model directories, the corpus manifest, the shipped held-out texts and
build_report.json. Then `python -m models.training.evaluate` measures them (CPU is fine) and
writes metrics.json and README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from models.training.corpus import build_corpus, write_corpus
from models.training.distill_draft import distill_draft
from models.training.encode import encode_all
from models.training.manifest import write_manifest, write_shipped_test_sets
from models.training.settings import BuildSettings, full_settings, smoke_settings
from models.training.tokenizer import save_for_transformers, train_bpe, training_texts
from models.training.train_adapters import train_adapter
from models.training.train_target import train_target


def hardware() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "peft": __import__("peft").__version__,
        "tokenizers": __import__("tokenizers").__version__,
    }


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, fn, *args, **kwargs):
        print(f"== {stage}", flush=True)
        start = time.monotonic()
        result = fn(*args, **kwargs)
        self.seconds[stage] = round(time.monotonic() - start, 2)
        print(f"== {stage} done in {self.seconds[stage]:.1f}s", flush=True)
        return result


def build(settings: BuildSettings, out: Path, work: Path, device: torch.device) -> dict:
    clock = Stopwatch()
    out.mkdir(parents=True, exist_ok=True)
    domains = clock.run("corpus", build_corpus, settings.corpus)
    write_corpus(domains, work)
    write_manifest(domains, settings.corpus, out)
    write_shipped_test_sets(domains, settings.corpus, out)
    by_name = {d.name: d.documents for d in domains}
    adapter_docs = {a.domain: by_name[a.domain] for a in settings.adapters}
    texts = training_texts(by_name["python"], adapter_docs, settings.corpus.tokenizer_sample_bytes)
    bpe = clock.run("tokenizer", train_bpe, texts, settings.vocab_size)
    tokenizer_dir = work / "tokenizer"
    save_for_transformers(bpe, tokenizer_dir, settings.max_position_embeddings)
    tokens = clock.run("encode", encode_all, work, tokenizer_dir / "tokenizer.json", 0)
    target_dir = out / settings.target_name
    target, target_report = clock.run(
        "target", train_target, settings, work, tokenizer_dir, target_dir, device
    )
    draft_report = clock.run(
        "draft",
        distill_draft,
        settings,
        target,
        work,
        tokenizer_dir,
        out / settings.draft_name,
        device,
    )
    adapter_reports = {
        spec.name: clock.run(
            f"adapter {spec.name}",
            train_adapter,
            spec,
            settings,
            work,
            target_dir,
            out / "adapters" / spec.name,
            device,
        )
        for spec in settings.adapters
    }
    return {
        "command": "python -m models.training " + " ".join(sys.argv[1:]),
        "hardware": hardware(),
        "stage_seconds": clock.seconds,
        "tokens": tokens,
        "target": target_report,
        "draft": draft_report,
        "adapters": adapter_reports,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for a CPU check")
    parser.add_argument("--out", type=Path, help="output dir (default models/, or <work>/models)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tandem-model-build"))
    args = parser.parse_args(argv)
    settings = smoke_settings() if args.smoke else full_settings()
    out = args.out or (args.work / "models" if args.smoke else Path(__file__).parents[1])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_float32_matmul_precision("high")
    report = build(settings, out, args.work, device)
    report["smoke"] = args.smoke
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
