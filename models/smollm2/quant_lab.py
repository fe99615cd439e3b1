"""The seed's third lab on the real model: what fp32, bf16, int8 and nf4 weights cost and keep.

    python -m models.smollm2.quant_lab [--windows 8] [--window-len 512] [--threads 1]

For each variant: perplexity (transformers; int8 = LLM.int8 and nf4 = 4-bit NormalFloat from
bitsandbytes, both on CPU, fp32 compute; embeddings, norms and the tied output layer stay in
the base dtype), weight memory and time per decode step of Tandem's engine at 1 and 8
streams (the engine's own bitsandbytes projections). Writes models/smollm2/lab.json.

The text: the Python Language Reference as the interpreter ships it (`pydoc_data.topics`,
the prose of `help("while")` and friends), English technical writing present on every
machine with Python, so anyone can re-run this offline on the same bytes (its sha256 is
recorded). Every variant reads the same windows, so the comparison between variants is fair;
the absolute perplexity may be optimistic, since the Python docs are public web text that a
pretraining crawl may have included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from models.smollm2.paths import MODEL_DIR, REPO_ROOT
from models.smollm2.prompts import CHAT_PROMPTS, chat_prompt_ids
from models.training.quantization import quiet_int8_casts, weight_bytes
from workers.config import CacheConfig, EngineConfig, Quantization, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

LAB_JSON = REPO_ROOT / "models" / "smollm2" / "lab.json"
VARIANTS: dict[str, tuple[str, Quantization | None]] = {  # name -> (dtype, bnb method)
    "fp32": ("float32", None),
    "bf16": ("bfloat16", None),
    "int8": ("float32", "int8"),
    "nf4": ("float32", "nf4"),
}


def reference_text() -> str:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def text_windows(tokenizer, text: str, count: int, length: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) < count * length:
        raise ValueError(f"the text has {len(ids)} tokens; ask for fewer windows")
    return torch.tensor(ids[: count * length]).view(count, length)


def hf_variant(dtype: str, method: str | None) -> torch.nn.Module:
    config = None
    if method == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    elif method == "nf4":
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    return AutoModelForCausalLM.from_pretrained(
        MODEL_DIR,
        dtype=getattr(torch, dtype),
        quantization_config=config,
        device_map="cpu",
        local_files_only=True,
    ).eval()


@torch.no_grad()
def mean_loss(model: torch.nn.Module, windows: torch.Tensor) -> float:
    losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in windows]
    return statistics.fmean(losses)  # equal-length windows: the mean over all tokens


def step_ms(dtype: str, method: Quantization | None, streams: int, new_tokens: int) -> float:
    """Median engine step (decode) while `streams` chat requests generate together."""
    engine = LLMEngine(
        EngineConfig(
            model=str(MODEL_DIR),
            dtype=dtype,
            quantization=method,
            cache=CacheConfig(block_size=16, num_blocks=256, enable_prefix_caching=False),
            scheduler=SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=1024),
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    for i in range(streams):
        prompt = chat_prompt_ids(tokenizer, CHAT_PROMPTS[i])
        engine.add_request(GenerateRequest(f"s{i}", tuple(prompt), params))
    times = []
    while engine.has_unfinished():
        start = time.perf_counter()
        engine.step()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[2:])  # the first steps are prefill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--window-len", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:  # one thread: steady figures on a machine other jobs share
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    text = reference_text()
    windows = text_windows(tokenizer, text, args.windows, args.window_len)
    rows: list[dict[str, Any]] = []
    for name, (dtype, method) in VARIANTS.items():
        with quiet_int8_casts():
            model = hf_variant(dtype, method)
            start = time.perf_counter()
            loss = mean_loss(model, windows)
            seconds = time.perf_counter() - start
            row = {
                "variant": name,
                "loss": loss,
                "perplexity": math.exp(loss),
                "weight_bytes": weight_bytes(model),
                "perplexity_seconds": round(seconds, 1),
                "step_ms_1": step_ms(dtype, method, 1, args.new_tokens),
                "step_ms_8": step_ms(dtype, method, 8, args.new_tokens),
            }
        del model
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        row["weight_ratio_vs_fp32"] = row["weight_bytes"] / rows[0]["weight_bytes"]
        row["perplexity_change_vs_fp32"] = row["perplexity"] / rows[0]["perplexity"] - 1
    LAB_JSON.write_text(
        json.dumps(
            {
                "command": "python -m models.smollm2.quant_lab"
                + (f" --threads {args.threads}" if args.threads else ""),
                "text": "pydoc_data.topics (Python Language Reference), topics in sorted order",
                "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "python": sys.version.split()[0],
                "windows": args.windows,
                "window_len": args.window_len,
                "tokens": args.windows * args.window_len,
                "torch_threads": torch.get_num_threads(),
                "load_average_at_end": os.getloadavg(),  # a shared machine: other users' load
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
