"""When a sequence is done: stop tokens, max_tokens and the model's context length."""

from __future__ import annotations

from workers.protocol import FinishReason
from workers.sampling_params import SamplingParams


def stop_token_ids(params: SamplingParams, eos_token_ids: tuple[int, ...]) -> frozenset[int]:
    """Tokens that end a sequence (and that min_tokens holds back)."""
    eos = () if params.ignore_eos else eos_token_ids
    return frozenset(eos) | frozenset(params.stop_token_ids)


def finish_reason(
    last_token: int,
    num_output_tokens: int,
    num_tokens: int,
    params: SamplingParams,
    stop_ids: frozenset[int],
    max_model_len: int,
) -> FinishReason | None:
    """Why the sequence ends after appending last_token, or None to go on."""
    if last_token in stop_ids and num_output_tokens >= params.min_tokens:
        return FinishReason.STOP
    if num_output_tokens >= params.max_tokens or num_tokens >= max_model_len:
        return FinishReason.LENGTH
    return None
