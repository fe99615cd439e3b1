"""Assemble an OpenAIService from plain settings (used by the Ray ingress and by tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from router.adapter_catalog import AdapterCatalog
from router.adapter_control import AdapterControl, AdapterControlPlane, AdapterReplicas
from router.admission import AdmissionConfig, AdmissionController
from router.auth import ApiKeyAuth
from router.backend import Backend
from router.load import LoadTracker
from router.metrics import MetricsSink, NullMetrics
from router.service import OpenAIService, ServiceSettings
from router.speculation import SpeculationPolicy
from router.tokenizer import PromptTokenizer
from router.validation import RequestLimits


def make_service(
    *,
    model_name: str,
    max_model_len: int,
    limits: RequestLimits,
    tokenizer: PromptTokenizer,
    backend: Backend,
    admission: AdmissionConfig,
    batch_slots: int,
    api_keys: Sequence[str] = (),
    adapter_roots: Sequence[str] = (),
    speculation: SpeculationPolicy | None = None,
    metrics: MetricsSink | None = None,
    catalog: AdapterCatalog | None = None,
    adapters: AdapterControl | None = None,
) -> OpenAIService:
    """`catalog`: the desired adapter set as this service sees it; `adapters`: who changes
    it (default: a control plane over `catalog` driving `backend`, which must then load
    adapters too, as LocalBackend does)."""
    catalog = catalog or AdapterCatalog(model_name, adapter_roots)
    if adapters is None:
        adapters = AdapterControlPlane(catalog, cast(AdapterReplicas, backend))
    return OpenAIService(
        settings=ServiceSettings(model_name, max_model_len, limits, int(time.time())),
        tokenizer=tokenizer,
        backend=backend,
        catalog=catalog,
        adapters=adapters,
        admission=AdmissionController(admission),
        speculation=speculation or SpeculationPolicy(),
        load=LoadTracker(batch_slots=batch_slots),
        metrics=metrics or NullMetrics(),
        auth=ApiKeyAuth(api_keys),
    )
