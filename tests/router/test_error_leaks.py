"""Error bodies never carry internals: an unexpected exception becomes a 500 that names
only a request id, under which the server log has the traceback; a request that failed in
the engine becomes a 500 with the engine's own safe message, and the others go on."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from tests.factories import make_engine
from tests.router.local_app import MODEL, make_local_app
from workers.async_engine import AsyncEngine

SECRET = "RuntimeError at /srv/tandem/secret.py, pid=4242, 10.1.2.3, ActorID(ff01)"


@pytest.fixture(scope="module")
def engine(served_model_dir: Path):
    engine = AsyncEngine(make_engine(served_model_dir))
    yield engine
    engine.shutdown()


async def request(app, method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tandem") as client:
        return await client.request(method, path, **kwargs)


def test_an_unexpected_exception_is_a_500_with_only_a_request_id(
    served_model_dir: Path, engine: AsyncEngine, caplog
) -> None:
    app, service, _ = make_local_app(served_model_dir, engine)

    def broken_models() -> NoReturn:
        raise RuntimeError(SECRET)

    service.models = broken_models  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        response = asyncio.run(request(app, "GET", "/v1/models", headers={"x-request-id": "r-77"}))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "internal_error" and "r-77" in error["message"]
    assert "secret" not in response.text and "4242" not in response.text
    logged = [r for r in caplog.records if "r-77" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log


def test_a_request_failed_in_the_engine_is_a_500_and_others_go_on(
    served_model_dir: Path, engine: AsyncEngine, monkeypatch
) -> None:
    import workers.sampling_batch as batch_module

    real = batch_module.prepare_processing

    def flaky(rows, *args):  # the bad request's logits processing fails in the batch
        if any(r is not None and r[0].seed == 13 for r in rows):
            raise IndexError(SECRET)
        return real(rows, *args)

    monkeypatch.setattr(batch_module, "prepare_processing", flaky)
    app, _, _ = make_local_app(served_model_dir, engine)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        bad = {"model": MODEL, "prompt": "hi", "seed": 13, "max_tokens": 4, "min_tokens": 2}
        good = {"model": MODEL, "prompt": "hi", "seed": 14, "max_tokens": 4}
        return await asyncio.gather(
            request(app, "POST", "/v1/completions", json=bad),
            request(app, "POST", "/v1/completions", json=good),
        )

    failed, served = asyncio.run(main())
    assert failed.status_code == 500, failed.text
    message = failed.json()["error"]["message"]
    assert re.search(r"request cmpl-\w+ failed in the engine while sampling", message)
    assert "secret" not in failed.text and "4242" not in failed.text
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == 4
