"""DraftServer: a draft model serving proposals to target replicas on other nodes.

It hosts the engine's DraftModelProposer (its own paged KV cache, per-request state keyed by
the target's request id, so a growing context only feeds the new tokens). Calls from many
target replicas are batched into one proposer call per draft step with `serve.batch`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch
from ray import serve

from deployments.engine_settings import EngineSettings
from workers.models.loader import resolve_dtype
from workers.models.model_config import ModelConfig
from workers.spec.draft_model import DraftModelProposer
from workers.spec.proposers import DraftQuery, Proposal


@serve.deployment(name="DraftServer")
class DraftServer:
    def __init__(self, model_dir: str, engine: dict[str, Any]) -> None:
        settings = EngineSettings.model_validate(engine)
        device = torch.device(settings.device)
        dtype = resolve_dtype(settings.dtype, ModelConfig.from_dir(model_dir).torch_dtype, device)
        self.proposer = DraftModelProposer(
            model_dir, dtype, device, settings.num_blocks or 1024, settings.block_size
        )
        self._lock = threading.Lock()  # the proposer is not thread-safe
        self._alive = True
        self.num_queries = 0
        self.num_proposals = 0

    async def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        """Proposals for one target replica's step (queries keyed by request id)."""
        return await self._propose_batched(queries)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _propose_batched(self, calls: list[list[DraftQuery]]) -> list[list[Proposal | None]]:
        flat = [q for call in calls for q in call]
        try:
            proposals = await asyncio.to_thread(self._locked, self.proposer.propose, flat)
        except Exception:
            self._alive = False  # a broken proposer: let Serve restart the replica
            raise
        self.num_queries += len(flat)
        self.num_proposals += sum(p is not None for p in proposals)
        out, start = [], 0
        for call in calls:
            out.append(proposals[start : start + len(call)])
            start += len(call)
        return out

    def stats(self) -> dict[str, int]:
        """Queries seen and proposals made since start."""
        return {"num_queries": self.num_queries, "num_proposals": self.num_proposals}

    async def release(self, key: str) -> None:
        """Forget a finished request's draft state."""
        await asyncio.to_thread(self._locked, self.proposer.release, key)

    def _locked(self, fn: Any, arg: Any) -> Any:
        with self._lock:
            return fn(arg)

    def check_health(self) -> None:
        if not self._alive:
            raise RuntimeError("the draft proposer failed; Serve restarts this replica")
