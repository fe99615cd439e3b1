"""LLMEngine: the synchronous step loop of one replica. Token ids in, TokenDeltas out."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.manager import LoRAManager
from workers.attention.select import paged_attention
from workers.config import EngineConfig
from workers.errors import AdapterNotFoundError
from workers.fault_isolation import run_isolated
from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager
from workers.model_runner import ModelRunner, PendingOutput
from workers.models.loader import load_model, resolve_dtype
from workers.models.model_config import ModelConfig
from workers.models.quantize import quantize_projections
from workers.protocol import (
    AdapterInfo,
    GenerateRequest,
    ReplicaStats,
    SpeculationMode,
    TokenDelta,
)
from workers.scheduler import Scheduler
from workers.scheduler_output import SchedulerOutput
from workers.sequence import Request
from workers.spec.draft_model import DraftModelProposer
from workers.spec.proposers import NgramProposer, Proposer, RemoteClient, RemoteProposer
from workers.spec.speculator import Speculator
from workers.stop_checker import stop_token_ids
from workers.structured.compiler import GrammarCompilation
from workers.structured.decoding import StructuredDecoding

logger = logging.getLogger(__name__)


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.model_config = ModelConfig.from_dir(config.model)
        cfg = self.model_config
        self.max_model_len = min(
            config.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings
        )
        dtype = resolve_dtype(config.dtype, cfg.torch_dtype, self.device)
        attention = paged_attention(cfg, self.device)
        model = load_model(Path(config.model), attention, dtype, self.device)
        if config.quantization is not None:
            quantize_projections(model, config.quantization, self.device)
        model.fuse_projections()
        block_size = config.cache.block_size
        num_blocks = self._num_blocks(dtype)
        self.kv = KVCacheManager(
            BlockPool(num_blocks, config.cache.enable_prefix_caching), block_size
        )
        self.adapters = (
            LoRAManager(config.lora, cfg, dtype, self.device) if config.lora is not None else None
        )
        # bitsandbytes layers synchronize with the host: no graph capture with them.
        graphs = config.cuda_graphs and config.quantization is None
        graph_batch = min(config.scheduler.max_num_seqs, 256) if graphs else 0
        budget = config.scheduler.max_num_batched_tokens
        mixed = graphs and config.mixed_graphs
        mixed_tokens = min(config.mixed_graph_tokens, budget) if mixed else 0
        self.runner = ModelRunner(
            model,
            num_blocks,
            block_size,
            dtype,
            self.device,
            config.seed,
            self.adapters,
            graph_batch=graph_batch,
            max_model_len=self.max_model_len,
            graph_tokens=1 + config.spec.num_speculative_tokens if config.spec else 1,
            mixed_tokens=mixed_tokens,
        )
        overlap = config.async_scheduling
        self.async_scheduling = self.device.type == "cuda" if overlap is None else overlap
        self.speculator = self._make_speculator(dtype)
        self.scheduler = Scheduler(
            config.scheduler,
            self.kv,
            self.adapters,
            self.max_model_len,
            self.speculator,
            decode_columns=True,
        )
        # Structured outputs: the tokenizer's grammar compiler is built on first use.
        self.structured = StructuredDecoding(
            GrammarCompilation(config.model, cfg.vocab_size, cfg.eos_token_ids), cfg.eos_token_ids
        )
        self.runner.structured = self.structured
        self._in_flight: LaunchedStep | None = None
        self._order = itertools.count()
        self._request_ids: set[str] = set()

    # -- requests ---------------------------------------------------------------------------

    def validate(self, spec: GenerateRequest) -> None:
        """Raise ValueError (saying what to change) for a request the engine cannot serve."""
        prompt = spec.prompt_token_ids
        if not prompt:
            raise ValueError("the prompt is empty; send at least one token")
        if len(prompt) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens but the model's context is "
                f"{self.max_model_len}; shorten the prompt"
            )
        vocab = self.model_config.vocab_size
        bad = [t for t in prompt if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {vocab})")
        bad = [t for t in spec.sampling.stop_token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(
                f"stop_token_ids holds token id {bad[0]}, outside the vocabulary [0, {vocab})"
            )
        bad = [t for t, _ in spec.sampling.logit_bias if not 0 <= t < vocab]
        if bad:
            raise ValueError(
                f"logit_bias holds token id {bad[0]}, outside the vocabulary [0, {vocab})"
            )
        width = max(spec.sampling.n, spec.sampling.beam_width)
        if width > self.config.scheduler.max_num_seqs:
            raise ValueError(
                f"n/beam_width {width} exceeds max_num_seqs "
                f"{self.config.scheduler.max_num_seqs}; ask for fewer sequences"
            )
        if self.kv.num_blocks_for(len(prompt)) + width > self.kv.pool.num_blocks:
            raise ValueError("the prompt cannot fit the KV cache; shorten it or add blocks")
        if spec.request_id in self._request_ids:
            raise ValueError(f"request id {spec.request_id!r} is already in use")
        if spec.adapter is not None:
            self._adapter_key(spec.adapter)
        if spec.sampling.structured is not None:
            self.structured.compilation.check(spec.sampling.structured)

    def _adapter_key(self, name: str) -> str:
        if self.adapters is None:
            raise AdapterNotFoundError(
                f"adapter {name!r} is not loaded: this engine serves no adapters "
                "(configure lora to enable them)"
            )
        return self.adapters.resolve(name)

    def add_request(self, spec: GenerateRequest) -> None:
        self.validate(spec)
        eos = () if spec.sampling.ignore_eos else self.model_config.eos_token_ids
        req = Request(spec, next(self._order), stop_ids=stop_token_ids(spec.sampling, eos))
        if spec.adapter is not None:
            req.adapter_key = req.cache_key = self._adapter_key(spec.adapter)
            assert self.adapters is not None  # _adapter_key raised otherwise
            self.adapters.acquire(req.adapter_key)
        if spec.sampling.structured is not None:  # compiles while the prompt is prefilled
            self.structured.compilation.submit(spec.sampling.structured)
        self._request_ids.add(spec.request_id)
        self.scheduler.add(req)

    def abort(self, request_id: str) -> list[TokenDelta]:
        """Cancel a request: its blocks return to the pool at once."""
        deltas = self.scheduler.abort(request_id)
        if not deltas:
            return []
        self._request_ids.discard(request_id)
        self._release_matchers()
        return deltas

    # -- adapters ---------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str, pinned: bool = False) -> AdapterInfo:
        """Register (or replace, as a new version) a PEFT LoRA adapter read from `path`."""
        directory, weights = self.adapter_manager().read(path)
        return self.adapter_manager().register(name, directory, weights, pinned)

    def unload_adapter(self, name: str) -> None:
        """Refuse new requests for `name`; running ones finish on its weights."""
        self.adapter_manager().unregister(name)

    def list_adapters(self) -> list[AdapterInfo]:
        return self.adapters.list() if self.adapters is not None else []

    def adapter_manager(self) -> LoRAManager:
        if self.adapters is None:
            raise AdapterNotFoundError("this engine serves no adapters; configure lora")
        return self.adapters

    # -- stepping ---------------------------------------------------------------------------

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    @property
    def step_in_flight(self) -> bool:
        """Whether the next step is already queued on the device (async scheduling)."""
        return self._in_flight is not None

    def step(self) -> list[TokenDelta]:
        """Run one step and return its deltas. With async scheduling, the step after it is
        scheduled and queued on the device before this one's tokens reach the host (and
        runs while the host applies them): each step() returns one step's deltas, one step
        is in flight between calls. A request whose own part fails ends with an ERROR delta;
        the step goes on for the others."""
        start = time.perf_counter()
        current, self._in_flight = self._in_flight, None
        if current is None:
            step = self.scheduler.schedule()
            current = LaunchedStep(step, self._launch(step))
        if self.async_scheduling:
            ahead = self.scheduler.schedule_ahead(current.step)
            if ahead is not None:
                self._launch_ahead(ahead)
        result = current.output.result()
        deltas = self.scheduler.update_from_output(current.step, result, started=start)
        if self.scheduler.step_finished:  # any(delta.finished for delta in deltas)
            self._request_ids &= self.scheduler.live_request_ids()
            self._release_matchers()
        return deltas

    def _release_matchers(self) -> None:
        """Grammar matchers of sequences no longer running or waiting are dropped."""
        if self.structured.num_matchers:
            self.structured.retain(self.scheduler.live_seq_ids())

    def _launch(self, step: SchedulerOutput) -> PendingOutput:
        """Queue the step; if that raises, run it again one request at a time."""
        try:
            return self.runner.launch(step)
        except Exception:
            logger.exception("launching a step failed")
            return PendingOutput(ready=run_isolated(self.runner, step))

    def _launch_ahead(self, ahead: SchedulerOutput) -> None:
        """Queue the step scheduled ahead while the current one runs (async scheduling). If
        queueing it raises, it is dropped: the next step() schedules the same work again
        synchronously (allocations are idempotent; its block copies are put back)."""
        try:
            launched = self.runner.launch(ahead)
        except Exception:
            logger.exception("queueing a step ahead failed; it runs again synchronously")
            self.scheduler.discard(ahead)
            return
        if ahead.empty:
            # It may still have planned copy-on-write block copies (a sample that got its
            # block before the blocks ran out): queued now by launch, after the current step.
            return
        self._in_flight = LaunchedStep(ahead, launched)

    def generate(self, specs: list[GenerateRequest]) -> dict[str, list[list[int]]]:
        """Run the given requests to completion: output token ids per request and sample."""
        outputs: dict[str, dict[int, list[int]]] = {s.request_id: {} for s in specs}
        for spec in specs:
            self.add_request(spec)
        while self.has_unfinished():
            for delta in self.step():
                outputs[delta.request_id].setdefault(delta.index, []).extend(delta.token_ids)
        return {rid: [out[i] for i in sorted(out)] for rid, out in outputs.items()}

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            num_free_blocks=self.kv.pool.num_free_blocks,
            num_total_blocks=self.kv.pool.num_blocks,
            num_running=self.scheduler.num_running,
            num_waiting=self.scheduler.num_waiting,
            prefix_cache_hit_rate=self.kv.prefix_hit_rate,
            resident_adapters=tuple(
                a.name for a in self.list_adapters() if a.residency == "device"
            ),
            num_preemptions=self.scheduler.num_preemptions,
            spec_acceptance_rate=(
                self.speculator.policy.stats.acceptance_rate if self.speculator else 0.0
            ),
        )

    # -- speculation ------------------------------------------------------------------------

    def attach_remote_draft(self, client: RemoteClient) -> None:
        """Serve SpeculationMode.REMOTE requests with proposals from `client` (a DraftServer
        on another node, say); its failures degrade to plain decoding."""
        if self.speculator is None:
            raise ValueError("speculative decoding is not configured; set EngineConfig.spec")
        self.speculator.proposers[SpeculationMode.REMOTE] = RemoteProposer(
            client, self.model_config.vocab_size, self.speculator.config.remote_timeout_s
        )

    def _make_speculator(self, dtype: torch.dtype) -> Speculator | None:
        spec = self.config.spec
        if spec is None:
            return None
        proposers: dict[SpeculationMode, Proposer] = {
            SpeculationMode.NGRAM: NgramProposer(spec.ngram_min, spec.ngram_max)
        }
        if spec.draft_model is not None:
            draft = DraftModelProposer(
                spec.draft_model,
                dtype,
                self.device,
                spec.draft_num_blocks,
                self.config.cache.block_size,
                graph_batch=self.runner.graphs.max_batch if self.runner.graphs else 0,
                graph_tokens=1 + spec.num_speculative_tokens,
            )
            if draft.vocab_size != self.model_config.vocab_size:
                raise ValueError(
                    f"draft model vocabulary ({draft.vocab_size}) differs from the target's "
                    f"({self.model_config.vocab_size}); the draft must share its tokenizer"
                )
            proposers[SpeculationMode.COLOCATED] = draft
        return Speculator(spec, proposers, overlaps=self.async_scheduling)

    # -- sizing -----------------------------------------------------------------------------

    def _num_blocks(self, dtype: torch.dtype) -> int:
        cache = self.config.cache
        cfg = self.model_config
        per_seq = -(-self.max_model_len // cache.block_size)
        if cache.num_blocks is not None:
            return cache.num_blocks
        block_bytes = (
            2
            * cfg.num_hidden_layers
            * cache.block_size
            * cfg.num_key_value_heads
            * cfg.head_dim
            * torch.tensor([], dtype=dtype).element_size()
        )
        budget = int(_free_memory(self.device) * cache.memory_fraction)
        num_blocks = min(budget // block_bytes, per_seq * self.config.scheduler.max_num_seqs)
        if num_blocks < per_seq:
            raise ValueError(
                f"only {num_blocks} KV blocks fit in memory but one {self.max_model_len}-token "
                f"sequence needs {per_seq}; lower max_model_len or raise memory_fraction"
            )
        return num_blocks


@dataclass(frozen=True)
class LaunchedStep:
    step: SchedulerOutput
    output: PendingOutput


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise ValueError("cannot read available memory; set cache.num_blocks explicitly")
