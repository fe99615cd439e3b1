"""The HTTP face of the OpenAI service (FastAPI): routes, auth, and errors in the OpenAI shape.

Every route except /health needs the API key when keys are configured. Request bodies are
parsed by the pydantic models in router/schema.py; a body that does not parse is a 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router import sse
from router.edge import BodyLimits, EdgeGuard
from router.errors import APIError, bad_request, internal_error
from router.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    LoadLoraAdapterRequest,
    UnloadLoraAdapterRequest,
)
from router.service import OpenAIService, Result

logger = logging.getLogger(__name__)


def build_openai_app(
    service: OpenAIService,
    health: Callable[[], None] | None = None,
    limits: BodyLimits | None = None,
) -> FastAPI:
    """`health` raises (an APIError) when the service should report unhealthy. `limits`:
    check the API key from the headers, then read the body under these limits, before any
    route runs (router/edge.py)."""
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
        return error_response(bad_request(message, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        error = APIError(exc.status_code, str(exc.detail), kind)
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(internal_error(f"internal error: {exc!r}"))
