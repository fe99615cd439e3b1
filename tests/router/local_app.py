"""The OpenAI app over an in-process AsyncEngine (no Ray), and the official openai client
talking to it through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import openai
from fastapi import FastAPI

from router.admission import AdmissionConfig
from router.app import build_openai_app
from router.assemble import make_service
from router.local_backend import LocalBackend
from router.metrics import RecordingMetrics
from router.service import OpenAIService
from router.tokenizer import PromptTokenizer
from router.validation import RequestLimits
from tests.factories import make_engine
from workers.async_engine import AsyncEngine
from workers.models.model_config import ModelConfig
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

MODEL = "tiny-chat"
MAX_MODEL_LEN = 256


def make_local_app(
    model_dir: Path,
    engine: AsyncEngine,
    api_keys: Sequence[str] = (),
    admission: AdmissionConfig | None = None,
    adapter_roots: Sequence[str] = (),
) -> tuple[FastAPI, OpenAIService, RecordingMetrics]:
    metrics = RecordingMetrics()
    service = make_service(
        model_name=MODEL,
        max_model_len=MAX_MODEL_LEN,
        limits=RequestLimits(
            ModelConfig.from_dir(str(model_dir)).vocab_size,
            engine.engine.config.scheduler.max_num_seqs,
        ),
        tokenizer=PromptTokenizer.from_pretrained(str(model_dir)),
        backend=LocalBackend(engine),
        admission=admission or AdmissionConfig(max_running=16, max_waiting=16),
        batch_slots=16,
        api_keys=api_keys,
        adapter_roots=adapter_roots,
        metrics=metrics,
    )
    return build_openai_app(service), service, metrics


def openai_client(app: FastAPI, api_key: str = "none") -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://tandem")
    # openai takes an httpx client (checked at run time) but annotates httpx2's only
    return openai.AsyncOpenAI(
        base_url="http://tandem/v1",
        api_key=api_key,
        http_client=http,  # type: ignore[arg-type]
        max_retries=0,
    )


def engine_greedy(model_dir: Path, prompt: Sequence[int], max_tokens: int, **kw) -> list[int]:
    """The engine's own greedy output, in-process: what HTTP must reproduce."""
    engine = make_engine(model_dir)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0, **kw)
    return engine.generate([GenerateRequest("oracle", tuple(prompt), sampling)])["oracle"][0]
