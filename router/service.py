"""The OpenAI service: validate and tokenize, admit, choose a decoding mode, dispatch, and
turn the replica's deltas into responses. Framework-free; router/app.py puts HTTP on it."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from router.adapter_catalog import AdapterCatalog
from router.adapter_control import AdapterControl
from router.admission import AdmissionController
from router.auth import ApiKeyAuth
from router.backend import Backend
from router.batch import batch_of, run_batch
from router.decoding import plan_decoding
from router.errors import APIError, bad_request, not_found, overloaded
from router.generation import Generation
from router.load import LoadTracker
from router.metrics import MetricsSink, labels
from router.model_names import model_list, resolve_adapter
from router.prepared import Endpoint, OutputOptions, PreparedRequest
from router.prompt_encoder import PromptEncoder
from router.sampling import (
    check_supported,
    engine_value_error,
    requested_logprobs,
    resolve_max_tokens,
    to_sampling_params,
)
from router.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    LoadLoraAdapterRequest,
    SamplingFields,
    TokenizeRequest,
    UnloadLoraAdapterRequest,
)
from router.speculation import SpeculationPolicy
from router.structured import structured_output
from router.tokenizer import PromptTokenizer
from router.tool_output import chat_constraint, with_tool_calls
from router.tools import tool_plan
from router.validation import RequestLimits, check_request, check_token_ids, check_unicode
from workers.errors import AdapterNotFoundError, EngineDeadError
from workers.protocol import GenerateRequest, SpeculationMode
from workers.structured.spec import StructuredOutput

Result = dict[str, Any] | AsyncIterator[str]


@dataclass(frozen=True)
class ServiceSettings:
    model_name: str  # the base model's served name
    max_model_len: int
    limits: RequestLimits
    created: int = 0


@dataclass
class OpenAIService:
    settings: ServiceSettings
    tokenizer: PromptTokenizer
    backend: Backend
    catalog: AdapterCatalog  # the desired set as this service sees it (names, /v1/models)
    adapters: AdapterControl  # who changes it
    admission: AdmissionController
    speculation: SpeculationPolicy
    load: LoadTracker
    metrics: MetricsSink
    auth: ApiKeyAuth

    def __post_init__(self) -> None:
        self._running: Counter[str] = Counter()
        self._encoder = PromptEncoder(self.tokenizer, self.settings.max_model_len)

    # -- endpoints ------------------------------------------------------------------------------

    async def completions(self, body: CompletionRequest) -> Result:
        check_request(body, self.settings.limits)
        check_supported(body)
        structured = structured_output(body)
        adapter = self._adapter(body.model)
        prompts = await self._encoder.encode_prompts(body.prompt)
        prepared = [
            self._prepare(Endpoint.COMPLETIONS, body, adapter, p, structured) for p in prompts
        ]
        if len(prepared) == 1:
            return await self.run(prepared[0])
        return await run_batch(self, batch_of(prepared))

    async def chat(self, body: ChatCompletionRequest) -> Result:
        check_request(body, self.settings.limits)
        check_supported(body)
        plan = tool_plan(body, getattr(self.tokenizer.tokenizer, "chat_template", None))
        structured = chat_constraint(body, plan)
        adapter = self._adapter(body.model)
        tools = plan.tools if plan is not None else None
        prompt = await self._encoder.encode_chat(body.messages, body.add_generation_prompt, tools)
        prepared = self._prepare(Endpoint.CHAT, body, adapter, prompt, structured)
        return with_tool_calls(plan, await self.run(prepared))

    def models(self) -> dict[str, Any]:
        return model_list(self.settings.model_name, self.catalog.names(), self.settings.created)

    def model(self, model_id: str) -> dict[str, Any]:
        """GET /v1/models/{id}: the base model or a loaded adapter, else a 404."""
        for entry in self.models()["data"]:
            if entry["id"] == model_id:
                return entry
        raise not_found(f"the model {model_id!r} does not exist; GET /v1/models lists them")

    def tokenize(self, body: TokenizeRequest) -> dict[str, Any]:
        if body.model is not None:
            self._adapter(body.model)  # 404 for an unknown model
        check_unicode(body)
        if (body.prompt is None) == (body.messages is None):
            raise bad_request("send exactly one of prompt and messages", "prompt")
        if body.messages is not None:
            ids = self.tokenizer.encode_chat(body.messages, body.add_generation_prompt)
        else:
            assert body.prompt is not None
            ids = self.tokenizer.encode_text(body.prompt, body.add_special_tokens)
        out: dict[str, Any] = {
            "count": len(ids),
            "max_model_len": self.settings.max_model_len,
            "tokens": list(ids),
        }
        if body.return_token_strs:
            out["token_strs"] = [self.tokenizer.token_text(t) for t in ids]
        return out

    def detokenize(self, body: DetokenizeRequest) -> dict[str, Any]:
        if body.model is not None:
            self._adapter(body.model)
        check_token_ids(body.tokens, self.settings.limits.vocab_size, "tokens")
        return {"prompt": self.tokenizer.decode(body.tokens, skip_special_tokens=False)}

    async def load_adapter(self, body: LoadLoraAdapterRequest) -> str:
        desired = await self.adapters.load(body.lora_name, body.lora_path, body.load_inplace)
        self.catalog.adopt(desired)  # this replica's mirror: visible here at once
        tags = labels(self.settings.model_name, body.lora_name)
        self.metrics.record("tandem:lora_loads_total", 1, tags)
        return f"Success: LoRA adapter '{body.lora_name}' added successfully."

    async def unload_adapter(self, body: UnloadLoraAdapterRequest) -> str:
        self.catalog.adopt(await self.adapters.unload(body.lora_name))
        return f"Success: LoRA adapter '{body.lora_name}' removed successfully."

    async def refresh_load(self) -> None:
        """Pull KV usage from the replicas; call periodically."""
        self.load.update_kv_usage(await self.backend.kv_usage())

    # -- one request ------------------------------------------------------------------------------

    async def run(self, prepared: PreparedRequest) -> Result:
        """Admit, dispatch and return the response body or its SSE events."""
        generation = await self.start(prepared)
        if prepared.output.stream:
            return generation.events()
        return await generation.response()

    async def start(self, prepared: PreparedRequest) -> Generation:
        """Admit and dispatch; the Generation streams the replica's output."""
        try:
            slot = await self.admission.acquire()
        except APIError:
            self.metrics.record("tandem:request_rejected_total", 1, self._tags(prepared))
            raise
        finally:
            self._record_queue(prepared)
        self._on_dispatch(prepared, +1)
        try:
            stream = await self._submit(prepared.engine_request)
        except BaseException:
            slot.release()
            self._on_dispatch(prepared, -1)
            self.load.on_finish(prepared.adapter, 0, 0)
            raise

        def finished(generation: Generation) -> None:
            slot.release()
            self._on_dispatch(prepared, -1)
            self.load.on_finish(
                prepared.adapter, generation.num_drafted_tokens, generation.num_accepted_tokens
            )

        return Generation(
            prepared, self.tokenizer, stream, self.metrics, self.settings.model_name, finished
        )

    def _prepare(
        self,
        endpoint: Endpoint,
        body: SamplingFields,
        adapter: str | None,
        prompt: tuple[int, ...],
        structured: StructuredOutput | None = None,
    ) -> PreparedRequest:
        max_tokens = resolve_max_tokens(body, len(prompt), self.settings.max_model_len)
        logprobs = requested_logprobs(body)
        plan = plan_decoding(body, logprobs)
        sampling = to_sampling_params(body, max_tokens, logprobs, plan, structured)
        prefix = "chatcmpl" if endpoint == Endpoint.CHAT else "cmpl"
        request = GenerateRequest(f"{prefix}-{uuid.uuid4().hex}", prompt, sampling, adapter)
        mode = SpeculationMode.NONE
        if body.speculative is not False:  # the client may opt out; the router opts in
            mode = self.speculation.decide(request, self.load.snapshot(adapter)).mode
        request = replace(request, speculation=mode, arrival_time=time.monotonic())
        output = OutputOptions(
            stop=tuple(body.stop_strings()),
            include_stop_str=body.include_stop_str_in_output,
            skip_special_tokens=body.skip_special_tokens,
            stream=body.stream,
            include_usage=body.include_usage,
            show_logprobs=logprobs is not None,
            echo=plan.echo,
            score_only=plan.score_only,
            keep=plan.keep if plan.ranks_samples else None,
        )
        return PreparedRequest(endpoint, body.model, request, output)

    async def _submit(self, request: GenerateRequest) -> Any:
        try:
            return await self.backend.submit(request)
        except APIError:
            raise
        except AdapterNotFoundError as e:
            raise not_found(str(e), "model", "adapter_not_found") from e
        except ValueError as e:
            raise engine_value_error(e) from e
        except EngineDeadError as e:
            raise overloaded(
                "a replica's engine failed and is being replaced; retry shortly", 5.0, 503
            ) from e

    def _adapter(self, model: str) -> str | None:
        return resolve_adapter(model, self.settings.model_name, self.catalog)

    def _tags(self, prepared: PreparedRequest) -> dict[str, str]:
        return labels(self.settings.model_name, prepared.adapter)

    def _on_dispatch(self, prepared: PreparedRequest, change: int) -> None:
        key = prepared.adapter or ""
        self._running[key] += change
        if change > 0:
            self.load.on_start()
        tags = self._tags(prepared)
        self.metrics.record("tandem:num_requests_running", self._running[key], tags)

    def _record_queue(self, prepared: PreparedRequest) -> None:
        waiting = self.admission.num_waiting
        self.metrics.record("tandem:num_requests_waiting", waiting, self._tags(prepared))
