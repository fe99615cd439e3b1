"""Engine throughput with 1, 8 and 64 distinct LoRA adapters in flight vs the base model,
same load, one run. Prints a table and writes benchmarks/results/<name>.json.

    .venv/bin/python -m benchmarks.lora_throughput [--device cuda] [--requests 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from adapters.config import SUPPORTED_MODULES, LoRAConfig
from adapters.peft_loader import module_shape
from benchmarks.common import hardware, print_table, save_random_llama, write_json
from benchmarks.engine_vs_hf import SHAPE, make_prompts, median_run
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.models.model_config import ModelConfig
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams


def write_adapter(out: Path, model: ModelConfig, rank: int, seed: int) -> None:
    """A random rank-`rank` adapter on every projection, in PEFT's file format."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(model.num_hidden_layers):
        for module in SUPPORTED_MODULES:
            part = (
                "self_attn" if module.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            )
            prefix = f"base_model.model.model.layers.{layer}.{part}.{module}"
            in_f, out_f = module_shape(model, module)
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, in_f, generator=g) * 0.02
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_f, rank, generator=g) * 0.02
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": list(SUPPORTED_MODULES),
        "bias": "none",
    }
    (out / "adapter_config.json").write_text(json.dumps(config))


def run(
    model_dir: Path,
    root: Path,
    num_adapters: int,
    prompts: list[list[int]],
    new_tokens: int,
    device: str,
) -> dict[str, float]:
    slots = max(num_adapters, 1)
    engine = LLMEngine(
        EngineConfig(
            model=str(model_dir),
            device=device,
            dtype="float32" if device == "cpu" else "auto",
            cache=CacheConfig(block_size=16, num_blocks=4096),
            scheduler=SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=4096),
            lora=LoRAConfig(
                max_loras=slots, max_cpu_loras=slots, max_lora_rank=16, adapter_roots=(str(root),)
            ),
        )
    )
    for i in range(num_adapters):
        engine.load_adapter(f"a{i}", f"a{i}")
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    for i, p in enumerate(prompts):
        adapter = f"a{i % num_adapters}" if num_adapters else None
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), params, adapter=adapter))
    generated = 0
    start = time.perf_counter()
    while engine.has_unfinished():
        generated += sum(len(d.token_ids) for d in engine.step())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "output_tokens": generated, "tokens_per_s": generated / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, nargs=2, default=(16, 48))
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--adapters", type=int, nargs="+", default=(1, 8, 64))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="lora_throughput_cpu.json")
    args = parser.parse_args()
    low, high = args.prompt_len
    prompts = make_prompts(args.requests, low, high, SHAPE["vocab_size"])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_random_llama(Path(tmp) / "model", **SHAPE)
        model = ModelConfig.from_dir(model_dir)
        root = Path(tmp) / "adapters"
        for i in range(max(args.adapters)):
            write_adapter(root / f"a{i}", model, rank=16, seed=i)
        settings = [0, *args.adapters]
        runs: dict[int, list[dict[str, float]]] = {n: [] for n in settings}
        for _ in range(args.repeats):
            for n in settings:
                runs[n].append(run(model_dir, root, n, prompts, args.new_tokens, args.device))
    base = median_run(runs[0])["tokens_per_s"]
    rows = []
    for n in settings:
        best = median_run(runs[n])
        rows.append(
            {
                "adapters_in_flight": n or "base only",
                "tokens_per_s": best["tokens_per_s"],
                "vs_base": best["tokens_per_s"] / base,
            }
        )
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "device": args.device,
            "model_shape": SHAPE,
            "rank": 16,
            "requests": args.requests,
            "new_tokens": args.new_tokens,
            "results": rows,
            "all_runs": {str(k): v for k, v in runs.items()},
        },
    )
    print(
        f"\n{hardware()}; {args.requests} requests, rank-16 adapters on all projections, "
        f"median of {args.repeats}"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
