"""Offline throughput and per-step latency: Tandem's engine vs transformers `generate`.

Same random-weight Llama, same prompts, same output lengths (EOS ignored), one run:
transformers gets one static, left-padded batch; Tandem gets the requests all at once and
batches them continuously. Prints a table and writes benchmarks/results/<name>.json.

    .venv/bin/python benchmarks/engine_vs_hf.py [--device cuda] [--num-prompts 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from benchmarks.common import hardware, median, print_table, save_random_llama, write_json
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

SHAPE = dict(
    vocab_size=8192,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=2048,
)


def make_prompts(count: int, low: int, high: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(low, high + 1, (count,), generator=g).tolist()
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def run_transformers(
    model_dir: Path, prompts: list[list[int]], new_tokens: int, device: str
) -> dict[str, float]:
    # transformers' @wraps(nn.Module.to/cuda) leaves the method unbound to a checker
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()  # type: ignore[arg-type]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        _sync(device)
        elapsed = time.perf_counter() - start
    generated = (out.shape[1] - width) * len(prompts)
    return {
        "seconds": elapsed,
        "output_tokens": generated,
        "tokens_per_s": generated / elapsed,
        "step_ms": 1000 * elapsed / new_tokens,
    }


def run_tandem(
    model_dir: Path, prompts: list[list[int]], new_tokens: int, device: str
) -> dict[str, float]:
    engine = LLMEngine(
        EngineConfig(
            model=str(model_dir),
            device=device,
            dtype="float32",
            cache=CacheConfig(block_size=16, num_blocks=2048),
            scheduler=SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=4096),
        )
    )
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    for i, p in enumerate(prompts):
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), params))
    step_ms: list[float] = []
    generated = 0
    start = time.perf_counter()
    while engine.has_unfinished():
        t0 = time.perf_counter()
        deltas = engine.step()
        _sync(device)
        step_ms.append(1000 * (time.perf_counter() - t0))
        generated += sum(len(d.token_ids) for d in deltas)
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "output_tokens": generated,
        "tokens_per_s": generated / elapsed,
        "step_ms": median(step_ms),
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, nargs=2, default=(32, 128))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine; medians")
    parser.add_argument("--name", default="engine_vs_hf_cpu.json")
    args = parser.parse_args()
    low, high = args.prompt_len
    prompts = make_prompts(args.num_prompts, low, high, SHAPE["vocab_size"])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_random_llama(Path(tmp) / "model", **SHAPE)
        runs: dict[str, list[dict[str, float]]] = {"hf": [], "ours": []}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            runs["hf"].append(run_transformers(model_dir, prompts, args.new_tokens, args.device))
            runs["ours"].append(run_tandem(model_dir, prompts, args.new_tokens, args.device))
    hf, ours = (median_run(runs[k]) for k in ("hf", "ours"))
    rows = [
        {"engine": "transformers generate (static batch)", **hf},
        {"engine": "tandem (continuous batching)", **ours},
    ]
    ratio = ours["tokens_per_s"] / hf["tokens_per_s"]
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "device": args.device,
            "model_shape": SHAPE,
            "num_prompts": args.num_prompts,
            "prompt_len": list(args.prompt_len),
            "new_tokens": args.new_tokens,
            "results": rows,
            "throughput_ratio": ratio,
        },
    )
    print(
        f"\n{hardware()}; {args.num_prompts} prompts of {args.prompt_len[0]}-"
        f"{args.prompt_len[1]} tokens, {args.new_tokens} new tokens each (step_ms: median "
        "engine step for tandem, mean decode step for transformers)"
    )
    print_table(rows)
    print(f"throughput ratio tandem / transformers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
