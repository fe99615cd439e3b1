"""The Router ingress: the OpenAI API (router/app.py) on Ray Serve, over LLMServer handles.

Besides HTTP, LLMServer replicas call `adapter_updates` to follow the desired adapter set.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.caller_watch import this_replica
from deployments.metrics import RayMetrics
from deployments.metrics_scrape import cluster_tandem_metrics
from deployments.router_settings import RouterSettings
from deployments.serve_backend import ServeBackend
from router.adapter_catalog import AdapterCatalog, AdapterSet
from router.admission import AdmissionConfig
from router.app import build_openai_app
from router.assemble import make_service
from router.tokenizer import PromptTokenizer
from router.validation import RequestLimits
from workers.gc_freeze import freeze_long_lived_objects

logger = logging.getLogger(__name__)

LOAD_REFRESH_S = 1.0


@serve.deployment(name="Router")
@serve.ingress()
class Router:
    def __init__(self, llm: DeploymentHandle, settings: dict[str, Any]) -> None:
        s = RouterSettings.model_validate(settings)
        catalog = AdapterCatalog(s.model_name, s.adapter_roots)
        for name, path in s.preload_adapters.items():  # replicas pick these up as they start
            catalog.add(name, catalog.check(name, path))
        self.service = make_service(
            model_name=s.model_name,
            max_model_len=s.max_model_len,
            limits=RequestLimits(s.vocab_size, s.max_sequences),
            tokenizer=PromptTokenizer.from_pretrained(s.tokenizer_dir),
            backend=ServeBackend(llm, catalog, this_replica()),
            admission=AdmissionConfig(s.max_running, s.max_waiting, s.retry_after_s),
            batch_slots=s.batch_slots,
            api_keys=s.resolved_api_keys(),
            adapter_roots=s.adapter_roots,
            speculation=s.speculation_policy(),
            metrics=RayMetrics(),
            catalog=catalog,
        )
        self._limits = s.edge.body_limits()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_load())
        freeze_long_lived_objects()  # set up: what lives now lives as long as the replica

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_openai_app(
            self.service, limits=self._limits, metrics_text=cluster_tandem_metrics
        )

    async def adapter_updates(
        self, known_version: int, replica_id: str, timeout_s: float, held: dict[str, str]
    ) -> AdapterSet:
        """Long poll for LLMServer replicas: returns the desired set once it differs from
        `known_version` (or after timeout_s). The call reports what the replica holds."""
        self.service.catalog.record_ack(replica_id, known_version, held)
        return await self.service.catalog.wait_changed(known_version, timeout_s)

    def adapter_status(self) -> dict[str, Any]:
        """The desired set and the version each replica reported holding."""
        snapshot = self.service.catalog.snapshot()
        return {
            "version": snapshot.version,
            "adapters": snapshot.adapters,
            "replicas": self.service.catalog.replica_versions(),
        }

    async def _refresh_load(self) -> None:
        while True:
            try:
                await self.service.refresh_load()
            except Exception:  # replicas may be starting; the next refresh tries again
                logger.debug("load refresh failed", exc_info=True)
            await asyncio.sleep(LOAD_REFRESH_S)
