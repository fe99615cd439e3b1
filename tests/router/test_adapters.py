"""Adapters through the OpenAI API (no Ray): load/unload at runtime, selection by `model`,
path confinement, and the catalog replicas follow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from router.adapter_catalog import AdapterCatalog, AdapterSet, plan_sync
from router.adapter_control import AdapterControlPlane
from router.errors import APIError
from router.model_names import resolve_adapter
from tests.factories import make_engine
from tests.lora_factories import make_peft_adapter
from tests.router.local_app import MODEL, make_local_app, openai_client
from workers.async_engine import AsyncEngine
from workers.config import LoRAConfig
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams

PROMPT = [5, 6, 7, 8, 9]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, served_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("lora-root")
    make_peft_adapter(served_model_dir, root / "sql", seed=1, rank=4)
    return root


@pytest.fixture(scope="module")
def app(served_model_dir: Path, adapter_dir: Path):
    engine = AsyncEngine(
        make_engine(served_model_dir, lora=LoRAConfig(adapter_roots=(str(adapter_dir),)))
    )
    yield make_local_app(served_model_dir, engine, adapter_roots=[str(adapter_dir)])[0]
    engine.shutdown()


def adapter_greedy(model_dir: Path, root: Path, adapter: str | None) -> list[int]:
    engine = make_engine(model_dir, lora=LoRAConfig(adapter_roots=(str(root),)))
    engine.load_adapter("sql", str(root / "sql"))
    request = GenerateRequest(
        "o", tuple(PROMPT), SamplingParams(max_tokens=8, temperature=0, ignore_eos=True), adapter
    )
    return engine.generate([request])["o"][0]


def post(app, path: str, body: dict) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(path, json=body)

    return asyncio.run(main())


def complete(app, model: str) -> openai.types.Completion:
    async def main():
        return await openai_client(app).completions.create(
            model=model, prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
        )

    return asyncio.run(main())


def test_adapter_lifecycle_through_the_api(app, adapter_dir, served_model_dir, prompt_tokenizer):
    with pytest.raises(openai.NotFoundError):
        complete(app, "sql")
    loaded = post(
        app, "/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": str(adapter_dir / "sql")}
    )
    assert loaded.status_code == 200, loaded.text

    models = asyncio.run(_models(app))
    assert [(m.id, getattr(m, "parent", None)) for m in models] == [(MODEL, None), ("sql", MODEL)]

    expected = prompt_tokenizer.decode(adapter_greedy(served_model_dir, adapter_dir, "sql"))
    base = prompt_tokenizer.decode(adapter_greedy(served_model_dir, adapter_dir, None))
    assert expected != base  # the adapter changes the output
    assert complete(app, "sql").choices[0].text == expected
    assert complete(app, f"{MODEL}:sql").choices[0].text == expected
    assert complete(app, MODEL).choices[0].text == base

    assert post(app, "/v1/unload_lora_adapter", {"lora_name": "sql"}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        complete(app, "sql")
    assert post(app, "/v1/unload_lora_adapter", {"lora_name": "sql"}).status_code == 404


async def _models(app):
    return (await openai_client(app).models.list()).data


def test_adapter_paths_are_confined_to_the_roots(app, tmp_path, served_model_dir):
    outside = make_peft_adapter(served_model_dir, tmp_path / "evil", seed=2, rank=4)
    refused = post(app, "/v1/load_lora_adapter", {"lora_name": "evil", "lora_path": str(outside)})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "lora_path"
    escaping = post(app, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "../evil"})
    assert escaping.status_code == 400
    bad_name = post(app, "/v1/load_lora_adapter", {"lora_name": f"{MODEL}", "lora_path": "sql"})
    assert bad_name.status_code == 400


def test_catalog_versions_and_replica_sync_plans(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    catalog = AdapterCatalog("base", [str(tmp_path)])
    first = catalog.add("a", catalog.check("a", "a"))
    assert first.version == 1 and first.adapters == {"a": str(tmp_path / "a")}
    assert catalog.add("a", str(tmp_path / "a")).version == 1  # same again: no change
    assert plan_sync({}, first.adapters).load == (("a", str(tmp_path / "a")),)
    assert plan_sync({"a": "old", "b": "x"}, first.adapters).unload == ("a", "b")

    async def poll() -> int:
        waiter = asyncio.create_task(catalog.wait_changed(1, timeout_s=5))
        await asyncio.sleep(0.01)
        catalog.remove("a")
        return (await waiter).version

    assert asyncio.run(poll()) == 2
    catalog.record_ack("r1", 1)
    catalog.record_ack("r2", 2)
    assert catalog.lagging(2, max_age_s=60) == ["r1"]


def test_a_restarted_router_adopts_the_set_its_replicas_hold() -> None:
    fresh = AdapterCatalog("base", [])
    fresh.record_ack("r1", 7, {"sql": "/adapters/sql"})
    assert fresh.snapshot().version == 7 and fresh.names() == ["sql"]
    fresh.record_ack("r2", 3, {})  # a replica behind the catalog changes nothing
    assert fresh.names() == ["sql"] and fresh.lagging(7, max_age_s=60) == ["r2"]


def test_model_names_resolve_to_adapters() -> None:
    assert resolve_adapter("base", "base", {"a"}) is None
    assert resolve_adapter("a", "base", {"a"}) == "a"
    assert resolve_adapter("base:a", "base", {"a"}) == "a"
    for unknown in ("b", "base:b", "other:a"):
        with pytest.raises(APIError) as e:
            resolve_adapter(unknown, "base", {"a"})
        assert e.value.status == 404


def test_a_mirror_adopts_newer_sets_and_follows_a_restarted_control_plane() -> None:
    control = AdapterCatalog("base", [])
    mirror = AdapterCatalog("base", [])
    control.add("a", "/adapters/a")
    second = control.add("b", "/adapters/b")
    assert mirror.adopt(second) and mirror.names() == ["a", "b"]
    assert mirror.snapshot().version == second.version
    stale = AdapterSet(1, {"a": "/adapters/a"})
    assert not mirror.adopt(stale)  # an older answer (a load's reply racing a poll) is ignored
    assert mirror.names() == ["a", "b"]
    assert mirror.adopt(stale, newer_only=False) and mirror.names() == ["a"]

    async def woken() -> int:  # the mirror's own waiters see adopted changes
        waiter = asyncio.create_task(mirror.wait_changed(1, timeout_s=5))
        await asyncio.sleep(0.01)
        mirror.adopt(AdapterSet(5, {}))
        return (await waiter).version

    assert asyncio.run(woken()) == 5


class RecordingReplicas:
    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.tried: list[str] = []
        self.synced: list[int] = []

    async def try_adapter(self, name: str, path: str) -> None:
        self.tried.append(name)
        if name in self.bad:
            raise ValueError("not a PEFT adapter")

    async def sync_adapters(self, desired: AdapterSet) -> None:
        self.synced.append(desired.version)


def test_the_control_plane_tries_then_adds_then_waits(tmp_path) -> None:
    for name in ("a", "broken"):
        (tmp_path / name).mkdir()
    replicas = RecordingReplicas(bad={"broken"})
    plane = AdapterControlPlane(AdapterCatalog("base", [str(tmp_path)]), replicas)

    async def scenario() -> None:
        loaded = await plane.load("a", "a", replace=False)
        assert loaded.adapters == {"a": str(tmp_path / "a")} and replicas.synced == [1]
        with pytest.raises(APIError) as twice:
            await plane.load("a", "a", replace=False)
        assert twice.value.status == 400 and twice.value.param == "lora_name"
        with pytest.raises(APIError) as broken:
            await plane.load("broken", "broken", replace=False)
        assert broken.value.param == "lora_path" and "broken" not in plane.catalog
        assert (await plane.unload("a")).adapters == {} and replicas.synced == [1, 2]
        with pytest.raises(APIError) as gone:
            await plane.unload("a")
        assert gone.value.status == 404

    asyncio.run(scenario())
    assert replicas.tried == ["a", "broken"]
