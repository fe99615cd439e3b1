"""The HTTP face of the OpenAI service (FastAPI): routes, auth, and errors in the OpenAI shape.

Every route except /health needs the API key when keys are configured. Request bodies are
parsed by the pydantic models in router/schema.py; a body that does not parse is a 400.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router import sse
from router.edge import BodyLimits, EdgeGuard
from router.errors import APIError, bad_request, not_found, request_failed
from router.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    LoadLoraAdapterRequest,
    TokenizeRequest,
    UnloadLoraAdapterRequest,
)
from router.service import OpenAIService, Result

logger = logging.getLogger(__name__)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
try:
    TANDEM_VERSION = version("tandem")
except PackageNotFoundError:  # run from a checkout that was never installed
    TANDEM_VERSION = "0+unknown"


def build_openai_app(
    service: OpenAIService,
    health: Callable[[], None] | None = None,
    limits: BodyLimits | None = None,
    metrics_text: Callable[[], Awaitable[str]] | None = None,
) -> FastAPI:
    """`health` raises (an APIError) when the service should report unhealthy. `limits`:
    check the API key from the headers, then read the body under these limits, before any
    route runs (router/edge.py). `metrics_text` gives GET /metrics its Prometheus text (the
    cluster's tandem: series)."""
    app = FastAPI(title="Tandem", docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    if limits is not None:
        app.add_middleware(EdgeGuard, limits=limits, check_auth=service.auth.check)

    def authorized(request: Request) -> None:
        service.auth.check(request.headers.get("authorization"))

    guarded = [Depends(authorized)]

    @app.get("/health")
    async def health_check() -> Response:
        if health is not None:
            health()
        return Response(status_code=200)

    @app.get("/v1/models", dependencies=guarded)
    async def list_models() -> dict[str, Any]:
        return service.models()

    @app.get("/v1/models/{model_id:path}", dependencies=guarded)
    async def get_model(model_id: str) -> dict[str, Any]:
        return service.model(model_id)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": TANDEM_VERSION}

    @app.post("/tokenize", dependencies=guarded)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        return service.tokenize(body)

    @app.post("/detokenize", dependencies=guarded)
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        return service.detokenize(body)

    @app.get("/metrics", dependencies=guarded)
    async def metrics() -> Response:
        if metrics_text is None:
            raise not_found("this server exports no metrics here", code="not_found")
        return Response(await metrics_text(), media_type=PROMETHEUS_TEXT)

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest) -> Response:
        return _respond(await service.completions(body))

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        return _respond(await service.chat(body))

    @app.post("/v1/load_lora_adapter", dependencies=guarded)
    async def load_lora_adapter(body: LoadLoraAdapterRequest) -> Response:
        return Response(await service.load_adapter(body), media_type="text/plain")

    @app.post("/v1/unload_lora_adapter", dependencies=guarded)
    async def unload_lora_adapter(body: UnloadLoraAdapterRequest) -> Response:
        return Response(await service.unload_adapter(body), media_type="text/plain")

    return app


def _respond(result: Result) -> Response:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(result, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = location[0] if location else None  # the top-level field, as OpenAI names it
        message = f"{'.'.join(location) or 'body'}: {first.get('msg', 'invalid request body')}"
        if first.get("type") == "extra_forbidden":
            message = f"{'.'.join(location)} is not supported by this server; remove it"
        return error_response(bad_request(message, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        error = APIError(exc.status_code, str(exc.detail), kind)
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex}"
        logger.error("request %s failed", request_id, exc_info=exc)
        return error_response(request_failed(request_id))
