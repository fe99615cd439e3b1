"""GPU benchmark suite: one command on the GPU machine, every figure side by side, a table
printed last and JSON written to benchmarks/results/.

    python -m benchmarks.gpu_suite [--quick] [--shape 1b|8b] [--name FILE] [--no-peer]
        [--peer-timeout S] [--peer-serving 128]

Random-weight Llama in bf16: TinyLlama's 1.1B shape (default) or Llama-3-8B's shape. Measures:
copy bandwidth; decode step time at batch 1 and 64 (eager, CUDA graphs with the host waiting
for each step, CUDA graphs with async scheduling) against the memory / compute floors; a
serving workload (prompts 128-1024, outputs 128-512, 256 requests at once) against
transformers `generate` at its best static batch; KV slot efficiency during that run; 64
mixed rank-16 LoRA adapters against the base model; cost per million output tokens. The 8B
shape runs the graphs rows and the serving rows only (its eager and adapter rows would say
nothing the 1.1B rows do not). A peer, first, in a process of its own: transformers `generate`
with a static cache and the decode forward compiled (benchmarks.hf_static_peer), its decode
step at batch 1 and 64 set beside every decode row (columns peer and vs_peer = Tandem's step
over the peer's) and as rows of its own against the same floor; with --peer-serving its best
static-batch tok/s beside Tandem's serving row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks.common import hardware, median, print_table, write_json
from benchmarks.lora_throughput import write_adapter
from benchmarks.suite_peer import peer_rows, run_peer, with_peer
from workers.config import CacheConfig, EngineConfig, LoRAConfig, Quantization, SchedulerConfig
from workers.engine import LLMEngine
from workers.gc_freeze import long_lived_objects_frozen
from workers.models.model_config import ModelConfig
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

SHAPE_1B = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=2048,
)
SHAPE_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=2048,
    rope_theta=500000.0,
)
SHAPES: dict[str, dict[str, Any]] = {"1b": SHAPE_1B, "8b": SHAPE_8B}
# Stated prices of one GPU-hour for the cost figure (on-demand cloud list prices, rounded).
GPU_HOUR_USD = {"H100": 2.50, "H200": 3.50}
BF16_TFLOPS = 800.0  # dense bf16 matmul rate measured on the H100/H200 (../shared/gpu/README.md)
DECODE_BATCHES = (1, 64)


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read plus written per second."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        dst.copy_(src)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() / median(times)


def gpu_hour_usd() -> float:
    name = hardware()
    return next((usd for gpu, usd in GPU_HOUR_USD.items() if gpu in name), GPU_HOUR_USD["H100"])


def save_model(path: Path, shape: dict | None = None) -> Path:
    config = AutoConfig.for_model("llama", bos_token_id=1, eos_token_id=2, **(shape or SHAPE_1B))
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return path


def engine_for(
    model_dir: Path,
    graphs: bool,
    lora: LoRAConfig | None = None,
    quantization: Quantization | None = None,
    overlap: bool = True,
    mixed: bool = True,
) -> LLMEngine:
    """mixed: also capture steps with prefill chunks (EngineConfig.mixed_graphs)."""
    return LLMEngine(
        EngineConfig(
            model=str(model_dir),
            device="cuda",
            dtype="bfloat16",
            cuda_graphs=graphs,
            mixed_graphs=mixed,
            async_scheduling=overlap,
            quantization=quantization,
            cache=CacheConfig(block_size=16, memory_fraction=0.6),
            scheduler=SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=8192),
            lora=lora,
        )
    )


def decode_step_ms(engine: LLMEngine, batch: int, steps: int = 30) -> float:
    params = SamplingParams(max_tokens=steps + 8, temperature=0, ignore_eos=True)
    g = torch.Generator().manual_seed(batch)
    for i in range(batch):
        prompt = torch.randint(3, 32000, (128,), generator=g).tolist()
        engine.add_request(GenerateRequest(f"d{batch}-{i}", tuple(prompt), params))
    while (
        any(
            s.num_computed_tokens < s.num_tokens - 1
            for r in engine.scheduler.running
            for s in r.seqs
        )
        or engine.scheduler.waiting
    ):
        engine.step()  # prefill
    times = []
    with long_lived_objects_frozen():
        for _ in range(steps):
            t0 = time.perf_counter()
            engine.step()
            times.append(time.perf_counter() - t0)
    for r in list(engine.scheduler.running):
        engine.abort(r.request_id)
    return 1000 * median(times)


def serving_workload(n: int, seed: int = 0) -> list[tuple[list[int], int]]:
    g = torch.Generator().manual_seed(seed)
    prompt_lens = torch.randint(128, 1025, (n,), generator=g).tolist()
    out_lens = torch.randint(128, 513, (n,), generator=g).tolist()
    return [
        (torch.randint(3, 32000, (p,), generator=g).tolist(), o)
        for p, o in zip(prompt_lens, out_lens, strict=True)
    ]


def run_serving(
    engine: LLMEngine, work: list[tuple[list[int], int]], adapters: int = 0
) -> dict[str, float]:
    for i, (prompt, out_len) in enumerate(work):
        params = SamplingParams(max_tokens=out_len, temperature=0, ignore_eos=True)
        adapter = f"a{i % adapters}" if adapters else None
        engine.add_request(GenerateRequest(f"s{i}", tuple(prompt), params, adapter=adapter))
    live_tokens = allocated = generated = 0
    bs = engine.kv.block_size
    with long_lived_objects_frozen():  # as the replica's engine loop runs
        start = time.perf_counter()
        while engine.has_unfinished():
            generated += sum(len(d.token_ids) for d in engine.step())
            stats = engine.stats()
            running = engine.scheduler.running
            live_tokens += sum(s.num_computed_tokens for r in running for s in r.seqs)
            allocated += (stats.num_total_blocks - stats.num_free_blocks) * bs
        elapsed = time.perf_counter() - start
    return {
        "tokens_per_s": generated / elapsed,
        "seconds": elapsed,
        "kv_efficiency": live_tokens / max(allocated, 1),
    }


def run_hf(
    model_dir: Path, work: list[tuple[list[int], int]], batch: int, new_tokens: int
) -> float:
    # transformers' @wraps(nn.Module.to/cuda) leaves the method unbound to a checker
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()  # type: ignore[call-arg]
    prompts = [p for p, _ in work[:batch]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device="cuda")
    mask = (
        torch.arange(width, device="cuda")[None, :]
        >= torch.tensor([width - len(p) for p in prompts], device="cuda")[:, None]
    ).long()
    with torch.inference_mode():
        model.generate(
            ids[:, :16],
            attention_mask=mask[:, :16],
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=0,
        )  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    del model
    torch.cuda.empty_cache()
    return batch * new_tokens / elapsed


def adapter_engine(model_dir: Path, count: int = 64) -> LLMEngine:
    """A graphs engine with `count` random rank-16 adapters a0, a1, ... loaded."""
    root = model_dir.parent / "adapters"
    cfg = ModelConfig.from_dir(model_dir)
    for i in range(count):
        write_adapter(root / f"a{i}", cfg, rank=16, seed=i)
    lora = LoRAConfig(
        max_loras=count, max_cpu_loras=count, max_lora_rank=16, adapter_roots=(str(root),)
    )
    engine = engine_for(model_dir, True, lora)
    for i in range(count):
        engine.load_adapter(f"a{i}", f"a{i}")
    return engine


def lora_row(model_dir: Path, work: list[tuple[list[int], int]]) -> dict:
    """64 distinct rank-16 adapters mixed in the batch against the base model, same load."""
    engine = adapter_engine(model_dir)
    short = [(p[:256], 128) for p, _ in work[:128]]
    for adapters in (0, 64):  # warm-up: kernels compiled, adapters on the device
        run_serving(engine, [(p, 8) for p, _ in short[:64]], adapters)
    # Alternating rounds, medians: one run is about a second, and the first runs of each
    # kind are the slowest.
    runs: dict[int, list[float]] = {0: [], 64: []}
    for _ in range(3):
        for adapters in runs:
            runs[adapters].append(run_serving(engine, short, adapters)["tokens_per_s"])
    base, mixed = median(runs[0]), median(runs[64])
    del engine
    torch.cuda.empty_cache()
    return row("64 rank-16 adapters vs base (tok/s)", mixed, "tok/s", base)


def row(measure: str, value: float, unit: str, floor: float = 0.0) -> dict[str, object]:
    return {
        "measure": measure,
        "value": value,
        "unit": unit,
        "floor": floor,
        "ratio": value / floor if floor else 0.0,
    }


def decode_rows(engine: LLMEngine, mode: str, cfg: ModelConfig, bandwidth: float) -> list[dict]:
    """Decode step at batch 1 and 64 against max(memory floor, compute floor)."""
    rows = []
    for batch in DECODE_BATCHES:
        ms = decode_step_ms(engine, batch)
        floor = decode_floor(cfg, bandwidth, batch)
        rows.append(row(f"decode step, batch {batch}, {mode}", ms, "ms", floor))
    return rows


def decode_floor(cfg: ModelConfig, bandwidth: float, batch: int) -> float:
    """max(weights + KV read at copy bandwidth, FLOPs at BF16_TFLOPS), ms per step."""
    params = _num_params(cfg)
    kv_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2
    kv_bytes = batch * 160 * kv_token  # 128-token prompts, ~30 decoded
    memory_floor = 1000 * (2 * params + kv_bytes) / bandwidth
    compute_floor = 1000 * 2 * params * batch / (BF16_TFLOPS * 1e12)
    return max(memory_floor, compute_floor)


def serving_rows(
    serving: dict[str, float], hf_best: float, usd_per_hour: float
) -> list[dict[str, object]]:
    cost = usd_per_hour / (serving["tokens_per_s"] * 3600) * 1e6
    return [
        row("serving output tokens/s (tandem)", serving["tokens_per_s"], "tok/s", hf_best),
        row("KV slots holding live tokens", serving["kv_efficiency"], "fraction", 0.95),
        row(f"cost per 1M output tokens at ${usd_per_hour}/h", cost, "USD"),
    ]


def engine_rows(
    model_dir: Path, modes: tuple[str, ...], bandwidth: float, work: list
) -> tuple[list[dict], dict[str, float]]:
    """Side by side: eager steps, CUDA graphs with the host waiting for each step, and graphs
    with async scheduling (the engine's default on CUDA). The serving run uses the last."""
    settings = {"eager": (False, False), "graphs, sync": (True, False), "graphs": (True, True)}
    cfg = ModelConfig.from_dir(model_dir)
    rows: list[dict] = []
    serving: dict[str, float] = {}
    for mode in modes:
        graphs, overlap = settings[mode]
        engine = engine_for(model_dir, graphs, overlap=overlap)
        rows += decode_rows(engine, mode, cfg, bandwidth)
        if mode == "graphs, sync":
            sync = run_serving(engine, work)["tokens_per_s"]
            rows.append(row("serving output tokens/s (tandem, sync)", sync, "tok/s"))
        if mode == "graphs":
            serving = run_serving(engine, work)
        del engine
        torch.cuda.empty_cache()
    return rows, serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workload (smoke run)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b", help="model shape")
    parser.add_argument("--lora-only", action="store_true", help="just the adapters row")
    parser.add_argument("--name", default=None, help="results file (default gpu_suite.json)")
    parser.add_argument("--no-peer", action="store_true", help="skip the transformers peer")
    parser.add_argument("--peer-timeout", type=float, default=240.0, help="seconds")
    parser.add_argument("--peer-serving", default="", help="peer serving batches, e.g. 128")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    usd_per_hour = gpu_hour_usd()
    results: dict[str, object] = {
        "hardware": hardware(),
        "shape": shape,
        "gpu_hour_usd": usd_per_hour,
    }
    bandwidth = copy_bandwidth()
    results["copy_bandwidth_TBps"] = bandwidth / 1e12
    # /dev/shm: the 8B checkpoint (16 GB) is written and read back at memory speed.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        model_dir = save_model(Path(tmp) / f"llama-{args.shape}", shape)
        if args.lora_only:
            lora = lora_row(model_dir, serving_workload(128))
            write_json("gpu_suite_lora.json", {"hardware": hardware(), "rows": [lora]})
            print_table([lora])
            return
        peer = None if args.no_peer else suite_peer(model_dir, args)
        work = serving_workload(32 if args.quick else 256)
        small = args.shape == "1b"
        modes = ("eager", "graphs, sync", "graphs") if small else ("graphs",)
        rows, serving = engine_rows(model_dir, modes, bandwidth, work)
        batches = (8, 32) if args.quick else (32, 128, 256) if small else (64, 256)
        hf_best = max(run_hf(model_dir, work, b, 128) for b in batches)
        cfg = ModelConfig.from_dir(model_dir)
        rows += peer_rows(peer, {b: decode_floor(cfg, bandwidth, b) for b in DECODE_BATCHES})
        rows += serving_rows(serving, hf_best, usd_per_hour)
        if small:
            rows.append(lora_row(model_dir, work))
    rows = with_peer(rows, peer)
    results["rows"] = rows
    results["peer"] = peer
    default = "gpu_suite_quick.json" if args.quick else "gpu_suite.json"
    if args.shape != "1b":
        default = default.replace(".json", f"_{args.shape}.json")
    write_json(args.name or default, results)
    print(
        f"\n{hardware()}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; {args.shape} Llama bf16; "
        f"floor = max(weights+KV over copy bandwidth, FLOPs at {BF16_TFLOPS:.0f} TFLOP/s); for "
        "serving the floor column is transformers generate at its best static batch; peer = "
        "transformers generate with a static cache and compiled decode (hf_static_peer), "
        "vs_peer = value / peer"
    )
    print_table(rows)


def suite_peer(model_dir: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """benchmarks.hf_static_peer on this checkpoint, in a process of its own, before Tandem's
    engines take the GPU (it exits with all its memory back)."""
    extra = ("--repeats", "3") if args.quick else ()
    if args.peer_serving:
        extra += ("--serving-batches", args.peer_serving)
    return run_peer(model_dir, DECODE_BATCHES, args.peer_timeout, extra)


def _num_params(cfg: ModelConfig) -> int:
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    layer = h * (q + 2 * kv) + q * h + 3 * h * i + 2 * h
    head = 0 if cfg.tie_word_embeddings else v * h
    return cfg.num_hidden_layers * layer + v * h + head + h


if __name__ == "__main__":
    main()
