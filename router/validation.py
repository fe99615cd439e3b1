"""Checks at the door that need the model: token ids inside the vocabulary, bounds on how
many sequences one request may ask for, and text that is valid Unicode. Each failure is a
400 naming the field, before any work reaches a replica."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from router.errors import bad_request
from router.schema import CompletionRequest, SamplingFields


@dataclass(frozen=True)
class RequestLimits:
    """vocab_size: the model's (token ids must lie in [0, vocab_size)); max_sequences: the
    most sequences one request may run at once (n, best_of, beam_width), a replica's
    max_num_seqs."""

    vocab_size: int
    max_sequences: int


def check_request(body: SamplingFields, limits: RequestLimits) -> None:
    check_unicode(body)
    check_widths(body, limits)
    if body.stop_token_ids:
        check_token_ids(body.stop_token_ids, limits.vocab_size, "stop_token_ids")
    if body.logit_bias:
        check_token_ids(_bias_token_ids(body.logit_bias), limits.vocab_size, "logit_bias")
    if isinstance(body, CompletionRequest) and not isinstance(body.prompt, str):
        for ids in _token_id_prompts(body.prompt):
            check_token_ids(ids, limits.vocab_size, "prompt")


def check_token_ids(token_ids: Iterable[int], vocab_size: int, param: str) -> None:
    for token in token_ids:
        if not 0 <= token < vocab_size:
            raise bad_request(
                f"{param} holds token id {token}, outside the model's vocabulary [0, {vocab_size})",
                param,
            )


def _bias_token_ids(logit_bias: dict[str, float]) -> list[int]:
    """logit_bias keys are token ids written as strings (JSON object keys)."""
    ids = []
    for key in logit_bias:
        try:
            ids.append(int(key))
        except ValueError:
            raise bad_request(
                f"logit_bias keys must be token ids (integers as strings), got {key!r}",
                "logit_bias",
            ) from None
    return ids


def check_widths(body: SamplingFields, limits: RequestLimits) -> None:
    """n, best_of and beam_width within what one replica runs at once."""
    fields: dict[str, int | None] = {"n": body.n, "beam_width": body.beam_width}
    if isinstance(body, CompletionRequest):
        fields["best_of"] = body.best_of
    for name, value in fields.items():
        if value is not None and value > limits.max_sequences:
            raise bad_request(
                f"{name} must be <= {limits.max_sequences} (the sequences one replica runs "
                f"at once, max_num_seqs), got {value}",
                name,
            )


def check_unicode(body: BaseModel) -> None:
    """JSON lets a string hold a lone surrogate (\\ud800), which no tokenizer can encode."""
    for name in type(body).model_fields:
        if _has_lone_surrogate(getattr(body, name)):
            raise bad_request(
                f"{name} is not valid Unicode (it holds a lone surrogate such as \\ud800); "
                "send UTF-8 text",
                name,
            )


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, BaseModel):
        return any(_has_lone_surrogate(getattr(value, f)) for f in type(value).model_fields)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _token_id_prompts(prompt: list[int] | list[str] | list[list[int]]) -> list[list[int]]:
    if prompt and isinstance(prompt[0], list):
        return [list(p) for p in prompt]
    if prompt and isinstance(prompt[0], int):
        return [list(prompt)]
    return []
