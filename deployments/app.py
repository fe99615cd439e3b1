"""The app builder behind `serve run config.yaml`: `import_path: deployments.app:build_app`.

Serve validates the config's `args` against AppArgs (this module avoids postponed
annotations so Serve can see the pydantic type).
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from deployments.adapter_control import NAME as ADAPTER_CONTROL
from deployments.adapter_control import AdapterControl
from deployments.draft_server import DraftServer
from deployments.engine_settings import EngineSettings, context_length, resolve_path
from deployments.llm_server import LLMServer
from deployments.router_ingress import Router
from deployments.router_settings import RouterArgs, RouterSettings
from deployments.serve_typing import as_deployment
from workers.models.model_config import ModelConfig
from workers.protocol import SpeculationMode

REQUEST_ROUTER = "router.request_router:TandemRequestRouter"
# A stopping replica takes no new requests and Serve waits for its ongoing ones (up to the
# Router's shutdown_timeout_s) every DRAIN_CHECK_S. LLMServer waits a little longer than the
# Router, so the Router, which holds the client, is the one that decides when a stream ends.
DRAIN_CHECK_S = 0.5
LLM_SHUTDOWN_MARGIN_S = 5.0
QUIET = {"enable_access_log": False}  # internal calls (stats every second, proposals per step)
CONTROL_MAX_ONGOING = 4096  # long polls: one per LLMServer and per Router replica, + loads
CONTROL_HEADROOM = 64  # /health, /v1/models, adapter loads beside the admitted requests
# Serve runs a replica's user code on a loop of its own thread beside the replica's control
# loop (and a handle's routing on a third), so every request and streamed message crosses
# threads, each crossing waiting for the GIL. Our replicas never block their loop (the engine
# steps on its own thread; tokenizing a prompt is short), so user code runs on the control
# loop. The Router's handle routes there too; LLMServer's keeps its own loop, since its engine
# thread calls the DraftServer handle synchronously.
ONE_LOOP = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
ROUTER_ONE_LOOP = {**ONE_LOOP, "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}
# The deployments, typed as Deployments (to a type checker the decorated names are classes)
_LLMServer = as_deployment(LLMServer)
_AdapterControl = as_deployment(AdapterControl)
_Router = as_deployment(Router)
_DraftServer = as_deployment(DraftServer)


class RoutingArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hot_queue_depth: int = Field(
        8, description="A replica with this many requests stops attracting its adapters."
    )
    affinity_slack: int = Field(
        4, description="Prefix affinity yields when its replica has this many more requests."
    )
    prefix_chunk_tokens: int = Field(16, description="Prefix affinity granularity in tokens.")
    stats_period_s: float = Field(1.0, description="How often replicas report routing stats.")


class LLMServerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(1, description="Target replicas (one engine each).")
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Requests one replica holds at once (its engine queues the excess). "
        "Default: every request the Routers admit cluster-wide, plus headroom for control "
        "calls, so that Serve never queues what admission let through (its queue waits "
        "with back-off for a replica to report room).",
    )
    ray_actor_options: dict[str, Any] = Field(
        default_factory=lambda: {"num_cpus": 1},
        description="Ray actor options: num_cpus, num_gpus, resources, ...",
    )
    engine: EngineSettings = Field(
        default_factory=EngineSettings, description="Engine settings of every replica."
    )
    engine_process: bool | None = Field(
        None,
        description="Each replica's engine steps in a process of its own, so it never waits "
        "for the GIL while the replica streams (workers/engine_core.py). None: on with CUDA, "
        "where the engine is host-bound; off on CPU, where the model's threads take the cores.",
    )
    routing: RoutingArgs = Field(
        default_factory=RoutingArgs, description="Replica choice (TandemRequestRouter)."
    )
    health_check_period_s: float = Field(
        2.0,
        description="How often Serve calls check_health: a replica whose engine loop died is "
        "replaced within about this long (its requests get a 503 with Retry-After meanwhile).",
    )


class DraftArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Deploy a DraftServer for remote speculation.")
    model: str = Field(
        "models/tandem-code-draft", description="Draft model directory (repo-relative or abs)."
    )
    num_replicas: int = Field(1, description="DraftServer replicas.")
    ray_actor_options: dict[str, Any] = Field(
        default_factory=lambda: {"num_cpus": 0.5}, description="Ray actor options."
    )
    engine: EngineSettings = Field(
        default_factory=EngineSettings,
        description="Draft settings: device, dtype, block_size, num_blocks are used.",
    )


class AdapterArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roots: list[str] = Field(
        default_factory=lambda: ["models/adapters"],
        description="Directories adapters may be loaded from (repo-relative or absolute); "
        "used when llm.engine.lora is set.",
    )
    preload: dict[str, str] = Field(
        default_factory=dict,
        description="Adapters every replica loads at start: name -> directory (under a root).",
    )


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        "models/tandem-code-8m",
        description="Hugging Face model directory (config, weights, tokenizer); relative "
        "paths are relative to the repository root.",
    )
    served_model_name: str | None = Field(
        None, description="The name clients use as `model`; default the directory's name."
    )
    llm: LLMServerArgs = Field(default_factory=LLMServerArgs, description="Target replicas.")
    draft: DraftArgs = Field(default_factory=DraftArgs, description="The DraftServer.")
    adapters: AdapterArgs = Field(default_factory=AdapterArgs, description="LoRA adapters.")
    router: RouterArgs = Field(default_factory=RouterArgs, description="The OpenAI Router.")


def build_app(args: AppArgs) -> Application:
    model_dir = _model_dir(args.model)
    name = args.served_model_name or Path(model_dir).name
    engine = args.llm.engine
    draft = _draft(args.draft)
    roots = [resolve_path(r) for r in args.adapters.roots] if engine.lora else []
    batch_slots = args.llm.num_replicas * engine.max_num_seqs
    max_running = args.router.max_running or batch_slots  # cluster-wide
    llm = _LLMServer.options(
        num_replicas=args.llm.num_replicas,
        max_ongoing_requests=args.llm.max_ongoing_requests or max_running + CONTROL_HEADROOM,
        health_check_period_s=args.llm.health_check_period_s,
        ray_actor_options=with_env(args.llm.ray_actor_options, ONE_LOOP),
        logging_config=QUIET,
        graceful_shutdown_timeout_s=args.router.shutdown_timeout_s + LLM_SHUTDOWN_MARGIN_S,
        graceful_shutdown_wait_loop_s=DRAIN_CHECK_S,
        # the ignores: Ray annotates RequestRouterConfig(**kwargs) as dicts
        request_router_config=RequestRouterConfig(
            request_router_class=REQUEST_ROUTER,  # type: ignore[arg-type]
            request_router_kwargs=args.llm.routing.model_dump(exclude={"stats_period_s"}),
            request_routing_stats_period_s=args.llm.routing.stats_period_s,  # type: ignore[arg-type]
        ),
    ).bind(
        model_dir, name, engine.model_dump(), roots, ADAPTER_CONTROL, draft, _engine_process(args)
    )
    control = _AdapterControl.options(
        ray_actor_options=with_env({"num_cpus": 0}, ONE_LOOP),
        max_ongoing_requests=CONTROL_MAX_ONGOING,
        logging_config=QUIET,
        # what it serves is long polls (their callers retry) and loads waiting for acks
        graceful_shutdown_timeout_s=DRAIN_CHECK_S,
        graceful_shutdown_wait_loop_s=DRAIN_CHECK_S,
    ).bind(llm, name, roots, args.adapters.preload)
    routers = args.router.num_replicas
    settings = RouterSettings(
        **args.router.model_dump(exclude={"max_running", "max_waiting"}),
        adapter_roots=roots,
        preload_adapters=args.adapters.preload,
        max_running=share(max_running, routers),
        max_waiting=share(args.router.max_waiting, routers),
        model_name=name,
        tokenizer_dir=model_dir,
        max_model_len=context_length(model_dir, engine.max_model_len),
        vocab_size=ModelConfig.from_dir(model_dir).vocab_size,
        max_sequences=engine.max_num_seqs,
        batch_slots=share(batch_slots, routers),
        proposers=_proposers(engine, draft is not None),
    )
    return _Router.options(
        num_replicas=routers,
        ray_actor_options=with_env(args.router.ray_actor_options, ROUTER_ONE_LOOP),
        # admission is the Router's own (429 with Retry-After); Serve must not queue first
        max_ongoing_requests=settings.max_running + settings.max_waiting + CONTROL_HEADROOM,
        graceful_shutdown_timeout_s=settings.shutdown_timeout_s,
        graceful_shutdown_wait_loop_s=DRAIN_CHECK_S,
    ).bind(llm, control, settings.model_dump())


def share(total: int, replicas: int) -> int:
    """One of `replicas` Router replicas' share of a cluster-wide limit (rounded up, so
    the cluster admits at least `total`)."""
    return -(-total // replicas)


def _draft(args: DraftArgs) -> Application | None:
    if not args.enabled:
        return None
    return _DraftServer.options(
        num_replicas=args.num_replicas,
        ray_actor_options=args.ray_actor_options,
        logging_config=QUIET,
    ).bind(_model_dir(args.model), args.engine.model_dump())


def with_env(actor_options: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`actor_options` with `env` added to its runtime_env (read when the replica's process
    starts); variables the config sets itself win."""
    runtime_env = dict(actor_options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
    return {**actor_options, "runtime_env": runtime_env}


def _engine_process(args: AppArgs) -> bool:
    if args.llm.engine_process is not None:
        return args.llm.engine_process
    return args.llm.engine.device.startswith("cuda")


def _proposers(engine: EngineSettings, has_draft_server: bool) -> list[SpeculationMode]:
    """What the replicas' engines can speculate with (none without `engine.spec`)."""
    if engine.spec is None:
        return []
    modes = [SpeculationMode.NGRAM]
    if engine.spec.draft_model:
        modes.append(SpeculationMode.COLOCATED)
    if has_draft_server:
        modes.append(SpeculationMode.REMOTE)
    return modes


def _model_dir(path: str) -> str:
    resolved = resolve_path(path)
    if not (Path(resolved) / "config.json").is_file():
        raise ValueError(
            f"no model at {resolved} (no config.json); build the bundled models with "
            "`python -m models.training` or point `model` at a Hugging Face model directory"
        )
    return resolved
