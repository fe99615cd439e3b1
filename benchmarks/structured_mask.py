"""Cost of grammar masks on a decode step: the same batch all free, half constrained by a
JSON schema, and all constrained, on the bundled demo model (CPU is fine).

    python -m benchmarks.structured_mask [--model models/tandem-code-8m] [--batch 16]

Prints the mean step time of each mix and the share of it spent filling masks (xgrammar's
fill_next_token_bitmask, inside StructuredDecoding.prepare).
"""

from __future__ import annotations

import argparse
import json
import time

from transformers import AutoTokenizer

from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams
from workers.structured.spec import StructuredOutput

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "count", "tags"],
}


def measure(model: str, batch: int, constrained: int, steps: int) -> dict[str, float]:
    engine = LLMEngine(
        EngineConfig(
            model=model,
            cache=CacheConfig(block_size=16, num_blocks=batch * 16),
            scheduler=SchedulerConfig(max_num_seqs=batch, max_num_batched_tokens=4096),
        )
    )
    prompt = tuple(AutoTokenizer.from_pretrained(model)("def main():\n")["input_ids"])
    spec = StructuredOutput.json_schema(SCHEMA)
    for i in range(batch):
        params = SamplingParams(
            max_tokens=steps + 8,
            temperature=0,
            structured=spec if i < constrained else None,
        )
        engine.add_request(GenerateRequest(f"r{i}", prompt, params))
    for _ in range(3):  # prefill and compilation out of the way
        engine.step()
    engine.structured.mask_seconds = 0.0
    engine.structured.mask_fills = 0
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    seconds = time.perf_counter() - start
    return {
        "constrained": constrained,
        "step_ms": 1000 * seconds / steps,
        "mask_ms": 1000 * engine.structured.mask_seconds / steps,
        "ms_per_mask": 1000 * engine.structured.mask_seconds / max(engine.structured.mask_fills, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/tandem-code-8m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    for constrained in (0, args.batch // 2, args.batch):
        print(json.dumps(measure(args.model, args.batch, constrained, args.steps)))


if __name__ == "__main__":
    main()
