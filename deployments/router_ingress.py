"""The Router ingress: the OpenAI API (router/app.py) on Ray Serve, over LLMServer handles.

Any number of replicas: each admits its share of the limits (deployments/app.py) and mirrors
the cluster's adapters from the AdapterControl deployment (deployments/adapter_mirror.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.adapter_control import preloaded_catalog
from deployments.adapter_mirror import AdapterMirror, RemoteAdapterControl
from deployments.caller_watch import this_replica
from deployments.metrics import RayMetrics
from deployments.metrics_scrape import cluster_tandem_metrics
from deployments.router_settings import RouterSettings
from deployments.serve_backend import ServeBackend
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
    def __init__(
        self, llm: DeploymentHandle, control: DeploymentHandle, settings: dict[str, Any]
    ) -> None:
        """`control`: the AdapterControl deployment, which owns the cluster's adapters;
        this replica mirrors its desired set (seeded with the same preloads)."""
        s = RouterSettings.model_validate(settings)
        catalog = preloaded_catalog(s.model_name, s.adapter_roots, s.preload_adapters)
        self.service = make_service(
            model_name=s.model_name,
            max_model_len=s.max_model_len,
            limits=RequestLimits(s.vocab_size, s.max_sequences),
            tokenizer=PromptTokenizer.from_pretrained(s.tokenizer_dir),
            backend=ServeBackend(llm, this_replica()),
            admission=AdmissionConfig(s.max_running, s.max_waiting, s.retry_after_s),
            batch_slots=s.batch_slots,
            api_keys=s.resolved_api_keys(),
            adapter_roots=s.adapter_roots,
            speculation=s.speculation_policy(),
            metrics=RayMetrics(),
            catalog=catalog,
            adapters=RemoteAdapterControl(control),
        )
        self._limits = s.edge.body_limits()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._refresh_load()),
            loop.create_task(AdapterMirror(control, catalog).run()),
        ]
        freeze_long_lived_objects()  # set up: what lives now lives as long as the replica

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_openai_app(
            self.service, limits=self._limits, metrics_text=cluster_tandem_metrics
        )

    def admission_state(self) -> dict[str, int]:
        """This replica's admission: its share of the limits, and what it holds now."""
        admission = self.service.admission
        return {
            "max_running": admission.config.max_running,
            "max_waiting": admission.config.max_waiting,
            "running": admission.num_running,
            "waiting": admission.num_waiting,
        }

    def adapter_mirror(self) -> tuple[str, list[str]]:
        """(this replica's id, the adapters its mirror resolves)."""
        return serve.get_replica_context().replica_id.unique_id, self.service.catalog.names()

    async def _refresh_load(self) -> None:
        while True:
            try:
                await self.service.refresh_load()
            except Exception:  # replicas may be starting; the next refresh tries again
                logger.debug("load refresh failed", exc_info=True)
            await asyncio.sleep(LOAD_REFRESH_S)
