"""The deployment classes and the app's typed args, without a Ray cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from deployments.adapter_sync import AdapterSync
from deployments.app import AppArgs, build_app
from deployments.llm_server import LLMServer
from deployments.serve_typing import user_class
from router.adapter_catalog import AdapterSet
from router.replica_stream import unpack
from router.routing_stats import RoutingStats
from workers.protocol import GenerateRequest
from workers.sampling_params import SamplingParams


def test_llm_server_streams_an_ack_then_deltas_and_fails_health_when_its_loop_dies(
    served_model_dir: Path,
) -> None:
    async def main() -> None:
        server = user_class(LLMServer)(
            str(served_model_dir), "m", {"num_blocks": 32, "block_size": 4}
        )
        try:
            request = GenerateRequest("r", (5, 6, 7), SamplingParams(max_tokens=3, ignore_eos=True))
            batches = [batch async for batch in server.generate(request)]
            assert batches[0] == []  # accepted
            assert sum(len(d.token_ids) for b in batches for d in b) == 3
            packed = [unpack(data) async for data in server.generate_packed(request)]
            assert packed[0] == [] and sum(len(d.token_ids) for b in packed for d in b) == 3
            raw = server.record_routing_stats()
            assert all(type(v) in (int, float, list) for v in raw.values())  # Serve's dict
            stats = RoutingStats.from_dict(raw)
            assert stats.num_total_blocks == 32 and stats.resident_adapters == ()
            server.check_health()
            server.engine.shutdown()  # the loop is gone: Serve must replace this replica
            with pytest.raises(RuntimeError, match="engine loop"):
                server.check_health()
        finally:
            server.__del__()

    asyncio.run(main())


def test_every_config_field_has_a_description() -> None:
    def undocumented(model: type[BaseModel], prefix: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            annotation = field.annotation
            for candidate in (annotation, *getattr(annotation, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    missing += undocumented(candidate, f"{prefix}{name}.")
        return missing

    assert undocumented(AppArgs, "") == []


def test_the_builder_names_a_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model at"):
        build_app(AppArgs(model=str(tmp_path / "nothing")))


def _llm_server(args: AppArgs) -> tuple[Any, dict[str, Any]]:
    """The built app's LLMServer deployment and the Router's settings."""
    router = build_app(args)._bound_deployment
    (llm,) = [
        a._bound_deployment
        for a in router.init_args
        if hasattr(a, "_bound_deployment") and a._bound_deployment.name == "LLMServer"
    ]
    return llm, router.init_args[-1]


def test_a_replica_takes_every_request_the_routers_admit() -> None:
    """Serve queues (with back-off) what a replica's max_ongoing_requests refuses: one
    replica must be able to take all that the Routers admit, the excess queued in its
    engine, whichever replica the request router picks."""
    model = str(Path(__file__).resolve().parents[2] / "models" / "tandem-code-8m")
    args = AppArgs.model_validate(
        {"model": model, "router": {"num_replicas": 4}, "llm": {"num_replicas": 8}}
    )
    llm, settings = _llm_server(args)
    admitted = 4 * settings["max_running"]
    assert admitted >= 8 * args.llm.engine.max_num_seqs
    assert llm.max_ongoing_requests > admitted
    explicit, _ = _llm_server(
        AppArgs.model_validate({"model": model, "llm": {"max_ongoing_requests": 7}})
    )
    assert explicit.max_ongoing_requests == 7


def test_the_repo_configs_parse() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    for name in ("config.yaml", "config.tiny.yaml", "config.gpu.yaml"):
        config = yaml.safe_load((root / name).read_text())
        (app,) = config["applications"]
        assert app["import_path"] == "deployments.app:build_app"
        AppArgs.model_validate(app["args"])


class RecordingServer:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    async def load_adapter(self, name: str, path: str) -> None:
        await asyncio.sleep(0.05)
        self.loaded.append(name)

    async def unload_adapter(self, name: str) -> None:
        self.loaded.remove(name)


def test_a_new_replica_holds_adapter_requests_until_its_first_sync() -> None:
    async def main() -> None:
        server = RecordingServer()
        sync = AdapterSync(server, "AdapterControl", replica=("app", "r1"))
        started = asyncio.get_running_loop().time()
        await sync.ready(timeout_s=0.05)  # nothing applied yet: gives up after the timeout
        assert asyncio.get_running_loop().time() - started >= 0.04
        waiter = asyncio.create_task(sync.ready(timeout_s=5))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await sync.apply(AdapterSet(3, {"sql": "/adapters/sql"}))
        await asyncio.wait_for(waiter, 1)  # released by the first sync, with sql in place
        assert server.loaded == ["sql"] and sync.version == 3
        await asyncio.wait_for(sync.ready(timeout_s=5), 0.01)  # at once from now on

    asyncio.run(main())
