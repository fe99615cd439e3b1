"""What each request will be: endpoint, model, prompt, lengths and sampling, drawn from the
workload's mixes with a seeded generator (the same seed plans the same requests)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from loadtest.prompts import PromptFactory
from loadtest.workload import BASE, Workload

Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True)
class PlannedRequest:
    endpoint: Endpoint
    adapter: str  # BASE or the adapter's name
    model: str  # what goes in the body's `model`
    prompt: str
    prompt_tokens: int  # as planned; the server's usage says what it counted
    max_tokens: int
    stream: bool
    temperature: float  # 0 is greedy
    top_p: float
    speculative: bool

    @property
    def label(self) -> str:
        """Locust's request name: one stats row per endpoint, streaming and model."""
        mode = "stream" if self.stream else "whole"
        return f"{self.endpoint} {mode} {self.adapter}"


class RequestPlanner:
    def __init__(
        self, workload: Workload, base_model: str, tokenizer_file: str | None = None
    ) -> None:
        self.workload = workload
        self.base_model = base_model
        self._rng = random.Random(workload.seed)
        self._prompts = PromptFactory(random.Random(workload.seed + 1), tokenizer_file)

    def next(self) -> PlannedRequest:
        w, rng = self.workload, self._rng
        adapter = _weighted(rng, w.adapters)
        sampled = rng.random() < w.sampling.sampled_share
        prompt_tokens = w.prompt_tokens.sample(rng)
        return PlannedRequest(
            endpoint=_weighted(rng, w.endpoints),  # type: ignore[arg-type]
            adapter=adapter,
            model=self.base_model if adapter == BASE else adapter,
            prompt=self._prompts.prompt(prompt_tokens),
            prompt_tokens=prompt_tokens,
            max_tokens=w.output_tokens.sample(rng),
            stream=rng.random() < w.stream_share,
            temperature=w.sampling.temperature if sampled else 0.0,
            top_p=w.sampling.top_p if sampled else 1.0,
            speculative=rng.random() < w.speculation.share,
        )


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]
