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


@dataclass(frozen=True)
class PreparedRequest:
    endpoint: Endpoint
    model: str  # the name the client used, echoed in responses
    engine_request: GenerateRequest
    output: OutputOptions
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def response_id(self) -> str:
        return self.engine_request.request_id

    @property
    def adapter(self) -> str | None:
        return self.engine_request.adapter

    @property
    def num_choices(self) -> int:
        return self.engine_request.sampling.n
