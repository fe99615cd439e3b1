"""A validated, tokenized request: everything the router decided before any engine work."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from workers.protocol import GenerateRequest


class Endpoint(StrEnum):
    COMPLETIONS = "completions"
    CHAT = "chat"


@dataclass(frozen=True)
class OutputOptions:
    """How token ids become the response text (router-side, the engine never sees these)."""

    stop: tuple[str, ...] = ()
    include_stop_str: bool = False
    skip_special_tokens: bool = True
    stream: bool = False
    include_usage: bool = False
    show_logprobs: bool = True  # False: the engine returns them for best_of ranking only
    echo: bool = False  # the prompt comes first in each choice (completions)
    score_only: bool = False  # max_tokens 0: the one sampled token is dropped
    keep: int | None = None  # best_of: return the `keep` most likely samples


@dataclass(frozen=True)
class PreparedRequest:
    endpoint: Endpoint
    model: str  # the name the client used, echoed in responses
    engine_request: GenerateRequest
    output: OutputOptions
    created: int = field(default_factory=lambda: int(time.time()))
    choice_offset: int = 0  # batched prompts: this prompt's first choice index
    batch_id: str | None = None  # batched prompts: the one response id they share

    @property
    def response_id(self) -> str:
        return self.batch_id or self.engine_request.request_id

    @property
    def adapter(self) -> str | None:
        return self.engine_request.adapter

    @property
    def num_choices(self) -> int:
        """Choice states to track: the engine's samples (best_of may return fewer)."""
        return self.engine_request.sampling.n

    @property
    def num_returned_choices(self) -> int:
        keep = self.output.keep
        return self.num_choices if keep is None else min(keep, self.num_choices)
