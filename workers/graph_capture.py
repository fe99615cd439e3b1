"""Capturing a set of CUDA graphs into one shared memory pool, largest first (the smaller
graphs then reuse the largest one's memory), logging how long it took."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureJob:
    """One graph: its size (token rows, for the order), a reset of its static inputs to
    padding, the step it records, and where the graph and its output go."""

    rows: int
    reset: Callable[[], None]
    step: Callable[[], torch.Tensor]
    store: Callable[[torch.cuda.CUDAGraph, torch.Tensor], None]


def capture_all(jobs: list[CaptureJob], what: str) -> None:
    pool = torch.cuda.graph_pool_handle()
    began = time.perf_counter()
    for job in sorted(jobs, key=lambda j: -j.rows):  # largest first
        job.reset()
        job.step()  # compile kernels and settle allocations outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            logits = job.step()
        job.store(graph, logits)
    torch.cuda.synchronize()
    logger.info(
        "captured %d CUDA graphs (%s) in %.2f s", len(jobs), what, time.perf_counter() - began
    )
