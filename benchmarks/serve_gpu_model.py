"""The model behind `serve_overhead --device cuda`: a random-weight Llama of the 1.1B shape
(benchmarks.gpu_suite.SHAPE_1B, bf16) with the bundled model's tokenizer files copied in.

The tokenizer's vocabulary is smaller than the model's 32000, so every prompt id is valid,
but a random model would mostly generate ids that decode to no text, and the HTTP side
times the first chunk with text. So the output rows of ids that decode to nothing on their
own (past the tokenizer, special, part of a character) are zeroed: their logit is 0 while
the largest of the others is positive, so greedy decoding never picks them. The shape and
the work per step stay those of SHAPE_1B.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from benchmarks.gpu_suite import SHAPE_1B

NOT_TOKENIZER = {"config.json", "generation_config.json"}


def save_gpu_model(path: Path, tokenizer_dir: Path) -> Path:
    bundled = json.loads((tokenizer_dir / "config.json").read_text())
    ids = {k: bundled[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in bundled}
    config = AutoConfig.for_model("llama", **{**SHAPE_1B, **ids})
    config.architectures = ["LlamaForCausalLM"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    silent = [i for i in range(len(tokenizer)) if not _has_text(tokenizer, i)]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[len(tokenizer) :] = 0
        head[silent] = 0
    model.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    for f in tokenizer_dir.iterdir():
        if f.is_file() and f.name not in NOT_TOKENIZER and f.suffix != ".safetensors":
            shutil.copy(f, path / f.name)
    return path


def _has_text(tokenizer, token_id: int) -> bool:
    text = tokenizer.decode([token_id], skip_special_tokens=True)
    return bool(text) and "\ufffd" not in text
