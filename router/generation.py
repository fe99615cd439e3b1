"""One request's delta stream -> an OpenAI response (whole, or as SSE events).

Deltas are coalesced (router/coalesce.py), turned into per-choice text updates
(router/choices.py) and written out. Leaving early - every choice hit a stop string, the
client went away, an error - closes the delta stream, which aborts the request in its
replica and frees its KV blocks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from router.choices import ChoiceState, ChoiceUpdate, merge_updates
from router.coalesce import coalesce
from router.errors import APIError, internal_error, overloaded, request_failed
from router.logprobs import merge_completion_logprobs
from router.metrics import MetricsSink, RequestTimer, labels
from router.prepared import Endpoint, PreparedRequest
from router.responses import FinalChoice, ResponseBuilder, Usage
from router.sampling import engine_value_error
from router.sse import DONE, event
from router.tokenizer import PromptTokenizer
from workers.errors import EngineDeadError, RequestFailedError
from workers.protocol import TokenDelta

logger = logging.getLogger(__name__)

DeltaStream = AsyncIterator[list[TokenDelta]]


class Generation:
    """Consume once, with `response()` or `events()`. `on_close` runs exactly once, when
    the stream is done or abandoned (e.g. to release an admission slot)."""

    def __init__(
        self,
        prepared: PreparedRequest,
        tokenizer: PromptTokenizer,
        deltas: DeltaStream,
        metrics: MetricsSink,
        metric_model: str,
        on_close: Callable[[Generation], None] | None = None,
    ) -> None:
        self.prepared = prepared
        self._deltas = deltas
        prompt = prepared.engine_request.prompt_token_ids
        self.choices = [
            ChoiceState(i, tokenizer, prompt, prepared.output) for i in range(prepared.num_choices)
        ]
        self._builder = ResponseBuilder(prepared, tokenizer)
        self._metrics = metrics
        self._tags = labels(metric_model, prepared.adapter)
        self._timer = RequestTimer(metrics, self._tags, prepared.engine_request.arrival_time)
        self._on_close = on_close
        self._num_cached = 0
        self._closed = False

    # -- results ------------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=len(self.prepared.engine_request.prompt_token_ids),
            completion_tokens=sum(c.num_tokens for c in self.choices),
            cached_tokens=self._num_cached,
        )

    @property
    def num_drafted_tokens(self) -> int:
        return sum(c.num_drafted_tokens for c in self.choices)

    @property
    def num_accepted_tokens(self) -> int:
        return sum(c.num_accepted_tokens for c in self.choices)

    async def response(self) -> dict[str, Any]:
        """The whole response body (non-streaming)."""
        texts: dict[int, list[str]] = {c.index: [] for c in self.choices}
        logprobs: dict[int, list[dict[str, Any]]] = {c.index: [] for c in self.choices}
        async with aclosing(self._updates()) as updates:
            async for batch in updates:
                for update in batch:
                    offset = sum(len(t) for t in texts[update.index])
                    part = self._builder.logprobs(update, offset)
                    if part is not None:
                        logprobs[update.index].append(part)
                    texts[update.index].append(update.text)
        finals = [
            FinalChoice(
                c.index,
                "".join(texts[c.index]),
                c.finish_reason,
                self._final_logprobs(logprobs[c.index]),
            )
            for c in self._kept_choices()
        ]
        for new_index, final in enumerate(finals):
            final.index = new_index
        return self._builder.final(finals, self.usage)

    def _kept_choices(self) -> list[ChoiceState]:
        """Every choice, or with best_of the `keep` most likely (cumulative logprob)."""
        keep = self.prepared.output.keep
        if keep is None or keep >= len(self.choices):
            return self.choices
        ranked = sorted(self.choices, key=lambda c: c.cum_logprob, reverse=True)
        return sorted(ranked[:keep], key=lambda c: c.index)

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return self._builder.usage_chunk(usage)

    async def events(self, final: bool = True) -> AsyncGenerator[str, None]:
        """SSE events; an error after the stream began becomes a `data: {"error": ...}`
        event and the stream ends without [DONE]. final=False (one prompt of a batch):
        neither the usage chunk nor [DONE], which the batch sends once."""
        offsets = {c.index: 0 for c in self.choices}
        try:
            if self.prepared.endpoint == Endpoint.CHAT:
                for choice in self.choices:
                    yield event(self._builder.role_chunk(choice.index))
            async with aclosing(self._updates()) as updates:
                async for batch in updates:
                    for update in batch:
                        logprobs = self._builder.logprobs(update, offsets[update.index])
                        offsets[update.index] += len(update.text)
                        yield event(self._builder.chunk(update, logprobs))
            if final and self.prepared.output.include_usage:
                yield event(self._builder.usage_chunk(self.usage))
            if final:
                yield DONE
        except APIError as e:
            self._record_failure()
            yield event(e.body())
        except ValueError as e:
            self._record_failure()
            yield event(engine_value_error(e).body())
        except Exception:  # the client must see a failure, never a clean finish
            logger.exception("request %s failed while streaming", self.prepared.response_id)
            self._record_failure()
            yield event(request_failed(self.prepared.response_id).body())
        finally:
            await self.close()

    async def close(self) -> None:
        """Abandon the request (aborts it in its replica if still running); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._deltas, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._on_close is not None:
                self._on_close(self)

    # -- the stream -----------------------------------------------------------------------------

    async def _updates(self) -> AsyncGenerator[list[ChoiceUpdate], None]:
        """Non-empty coalesced updates until every choice finished."""
        try:
            async with aclosing(coalesce(self._deltas)) as batches:
                async for batch in batches:
                    updates = self._consume([d for deltas in batch for d in deltas])
                    if updates:
                        yield updates
                    if all(c.finished for c in self.choices):
                        self._record_finish()
                        return
            raise internal_error("the replica's stream ended before every choice finished")
        except RequestFailedError as e:  # this request failed in the engine; others go on
            raise internal_error(e.message) from e
        except EngineDeadError as e:
            raise overloaded(
                "the replica's engine failed and is being replaced; retry shortly", 5.0, 503
            ) from e
        finally:
            await self.close()

    def _consume(self, deltas: list[TokenDelta]) -> list[ChoiceUpdate]:
        by_choice: dict[int, list[TokenDelta]] = {}
        for delta in deltas:
            self._num_cached = max(self._num_cached, delta.num_cached_tokens)
            by_choice.setdefault(delta.index, []).append(delta)
        updates = [
            update
            for index, group in by_choice.items()
            for update in self.choices[index].consume_all(group)
        ]
        self._timer.on_tokens(sum(len(u.token_ids) for u in updates))
        return [u for u in merge_updates(updates) if not u.is_empty]

    def _record_failure(self) -> None:
        self._metrics.record("tandem:request_failure_total", 1, self._tags)

    def _record_finish(self) -> None:
        usage = self.usage
        record = self._metrics.record
        record("tandem:prompt_tokens_total", usage.prompt_tokens, self._tags)
        record("tandem:generation_tokens_total", usage.completion_tokens, self._tags)
        record("tandem:request_success_total", 1, self._tags)
        if self.num_drafted_tokens:
            record("tandem:spec_decode_num_draft_tokens_total", self.num_drafted_tokens, self._tags)
            record(
                "tandem:spec_decode_num_accepted_tokens_total", self.num_accepted_tokens, self._tags
            )
        self._timer.on_finish()

    def _final_logprobs(self, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not self.prepared.output.show_logprobs:
            return None
        if self.prepared.endpoint == Endpoint.CHAT:
            return {"content": [entry for part in parts for entry in part["content"]]}
        return merge_completion_logprobs(parts)
