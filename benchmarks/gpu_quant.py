"""bitsandbytes on the GPU: weight memory and decode step time of int8 and nf4 projections
against bf16, same random 1.1B Llama, one run. Prints a table, writes JSON.

    python -m benchmarks.gpu_quant
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import hardware, print_table, write_json
from benchmarks.gpu_suite import decode_step_ms, engine_for, save_model
from workers.config import Quantization
from workers.models.quantize import weight_bytes


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(Path(tmp) / "llama-1b")
        variants: list[tuple[Quantization | None, bool]] = [
            (None, True),
            (None, False),
            ("int8", False),
            ("nf4", False),
        ]
        for quantization, graphs in variants:
            t0 = time.perf_counter()
            e = engine_for(model_dir, graphs, quantization=quantization)
            load_s = time.perf_counter() - t0
            rows.append(
                {
                    "weights": quantization or "bf16",
                    "cuda_graphs": graphs,
                    "weight_MB": weight_bytes(e.runner.model) / 1e6,
                    "step_ms_batch1": decode_step_ms(e, 1),
                    "step_ms_batch16": decode_step_ms(e, 16),
                    "load_s": load_s,
                }
            )
            del e
            torch.cuda.empty_cache()
    write_json("gpu_quant.json", {"hardware": hardware(), "results": rows})
    print(f"\n{hardware()}; random 1.1B Llama; projections quantized, embeddings/head bf16")
    print_table(rows)


if __name__ == "__main__":
    main()
