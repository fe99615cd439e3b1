"""Offline demo of the engine on the bundled model: `python -m workers.demo [model_dir]`.

Streams a few completions through the AsyncEngine with different decoding strategies, in one
continuous batch, and prints the engine's stats.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from transformers import AutoTokenizer

from workers.async_engine import AsyncEngine
from workers.config import CacheConfig, EngineConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "tandem-code-8m"

DEMOS = [
    ("greedy", "def fibonacci(n):\n", SamplingParams(max_tokens=48, temperature=0)),
    ("top-p 0.9, seed 1", "import os\n\n\ndef ", SamplingParams(max_tokens=48, top_p=0.9, seed=1)),
    ("beam search, 3 beams", "class Stack:\n", SamplingParams(max_tokens=32, beam_width=3)),
    ("n=2 samples", "for i in range(", SamplingParams(max_tokens=24, n=2, seed=7, temperature=0.8)),
]


async def run(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    engine = AsyncEngine(
        LLMEngine(EngineConfig(model=str(model_dir), cache=CacheConfig(num_blocks=512)))
    )

    async def one(i: int, title: str, prompt: str, params: SamplingParams) -> str:
        ids = tuple(tokenizer(prompt)["input_ids"])
        outputs: dict[int, list[int]] = {}
        async for delta in engine.add_request(GenerateRequest(f"demo-{i}", ids, params)):
            outputs.setdefault(delta.index, []).extend(delta.token_ids)
        texts = [tokenizer.decode(outputs[k], skip_special_tokens=True) for k in sorted(outputs)]
        body = "\n".join(f"--- sample {k} ---\n{prompt}{t}" for k, t in enumerate(texts))
        return f"=== {title} ===\n{body}\n"

    start = time.perf_counter()
    results = await asyncio.gather(*(one(i, *d) for i, d in enumerate(DEMOS)))
    elapsed = time.perf_counter() - start
    print("\n".join(results))
    print(f"{len(DEMOS)} requests in one batch, {elapsed:.2f} s; stats: {engine.stats()}")
    engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    asyncio.run(run(args.model_dir))


if __name__ == "__main__":
    main()
