"""One choice (sample `index`) of a request: token deltas in, text updates out.

Applies incremental detokenization and stop strings; once a stop string matched, the
choice is finished and later deltas for it are ignored (the caller aborts the request when
every choice is done). Deltas that arrived together are detokenized together (one decode
per batch, not per token) unless stop strings must see them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from router.detokenizer import IncrementalDetokenizer
from router.errors import APIError
from router.prepared import OutputOptions
from router.stop_strings import StopStringMatcher
from router.tokenizer import PromptTokenizer
from workers.protocol import FinishReason, TokenDelta, TokenLogprob


@dataclass(frozen=True)
class ChoiceUpdate:
    """New output of one choice: text to send, the tokens behind it and their logprobs."""

    index: int
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] | None
    finish_reason: str | None

    def merge(self, later: ChoiceUpdate) -> ChoiceUpdate:
        assert later.index == self.index and self.finish_reason is None
        logprobs = None
        if self.logprobs is not None or later.logprobs is not None:
            logprobs = (self.logprobs or ()) + (later.logprobs or ())
        return ChoiceUpdate(
            self.index,
            self.text + later.text,
            self.token_ids + later.token_ids,
            logprobs,
            later.finish_reason,
        )

    @property
    def is_empty(self) -> bool:
        return not self.text and not self.token_ids and self.finish_reason is None


class ChoiceState:
    def __init__(
        self,
        index: int,
        tokenizer: PromptTokenizer,
        prompt_token_ids: Sequence[int],
        options: OutputOptions,
    ) -> None:
        self.index = index
        self._detokenizer = IncrementalDetokenizer(
            tokenizer, prompt_token_ids, options.skip_special_tokens
        )
        self._stop = StopStringMatcher(options.stop, options.include_stop_str)
        self._joinable = not options.stop  # tokens after a stop string must not count
        self._options = options
        self._prompt = tuple(prompt_token_ids)
        self._tokenizer = tokenizer
        self._echo_pending = options.echo
        self.cum_logprob = 0.0  # of the generated tokens (best_of ranks by it)
        self.num_tokens = 0
        self.num_drafted_tokens = 0
        self.num_accepted_tokens = 0
        self.finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def consume_all(self, deltas: Sequence[TokenDelta]) -> list[ChoiceUpdate]:
        """The updates of this choice's deltas from one batch, in order."""
        if self._joinable and len(deltas) > 1 and not any(d.finished for d in deltas[:-1]):
            deltas = [join_deltas(deltas)]
        updates = [self.consume(delta) for delta in deltas]
        return [u for u in updates if u is not None]

    def consume(self, delta: TokenDelta) -> ChoiceUpdate | None:
        """The update this delta makes visible, or None when the choice already ended."""
        assert delta.index == self.index
        if self.finished:
            return None
        echo = self._echo(delta) if self._echo_pending else None
        update = self._generated(delta)
        return update if echo is None else echo.merge(update)

    def _echo(self, delta: TokenDelta) -> ChoiceUpdate:
        """The prompt as the start of the choice, with its log-probabilities if asked."""
        self._echo_pending = False
        logprobs = None
        if delta.prompt_logprobs is not None:
            first = TokenLogprob(self._prompt[0], None)
            logprobs = (first, *delta.prompt_logprobs)
        text = self._tokenizer.decode(
            list(self._prompt), skip_special_tokens=self._options.skip_special_tokens
        )
        return ChoiceUpdate(self.index, text, self._prompt, logprobs, None)

    def _generated(self, delta: TokenDelta) -> ChoiceUpdate:
        if delta.finish_reason == FinishReason.ABORT:
            raise APIError(
                503,
                "the replica cancelled this request (it may be shutting down); retry it",
                "service_unavailable",
                code="aborted",
                headers={"Retry-After": "1"},
            )
        if self._options.score_only:  # the prompt alone was asked for
            self.finish_reason = FinishReason.LENGTH.value
            return ChoiceUpdate(self.index, "", (), None, self.finish_reason)
        self.num_tokens += len(delta.token_ids)
        self.cum_logprob += sum(e.logprob or 0.0 for e in delta.logprobs or ())
        self.num_drafted_tokens = max(self.num_drafted_tokens, delta.num_drafted_tokens)
        self.num_accepted_tokens = max(self.num_accepted_tokens, delta.num_accepted_tokens)
        text = self._detokenizer.push(delta.token_ids)
        if delta.finished:
            text += self._detokenizer.flush()
        match = self._stop.feed(text)
        text = match.text
        if match.stopped:
            self.finish_reason = FinishReason.STOP.value
        elif delta.finish_reason is not None:
            text += self._stop.flush()
            self.finish_reason = delta.finish_reason.value
        return ChoiceUpdate(self.index, text, delta.token_ids, delta.logprobs, self.finish_reason)


def join_deltas(deltas: Sequence[TokenDelta]) -> TokenDelta:
    """One delta with the tokens (and logprobs) of consecutive deltas of one choice; its
    counters and finish reason are the last delta's."""
    last = deltas[-1]
    logprobs = None
    if any(d.logprobs is not None for d in deltas):
        logprobs = tuple(entry for d in deltas for entry in d.logprobs or ())
    return replace(
        last,
        token_ids=tuple(t for d in deltas for t in d.token_ids),
        logprobs=logprobs,
        num_cached_tokens=max(d.num_cached_tokens for d in deltas),
    )


def merge_updates(updates: Sequence[ChoiceUpdate]) -> list[ChoiceUpdate]:
    """One update per choice, in first-seen order: what a coalesced chunk carries."""
    merged: dict[int, ChoiceUpdate] = {}
    for update in updates:
        seen = merged.get(update.index)
        merged[update.index] = update if seen is None else seen.merge(update)
    return list(merged.values())
