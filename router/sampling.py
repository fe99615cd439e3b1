"""OpenAI request fields -> SamplingParams, with 400s that name the offending field."""

from __future__ import annotations

from router.decoding import DecodingPlan
from router.errors import APIError, bad_request
from router.schema import ChatCompletionRequest, CompletionRequest, SamplingFields
from workers.sampling_params import SamplingParams

MAX_LOGPROBS = 20


def check_supported(req: SamplingFields) -> None:
    """Reject OpenAI fields Tandem does not serve, rather than ignoring them silently."""
    if req.logit_bias:
        raise bad_request("logit_bias is not supported; remove it", "logit_bias")
    if isinstance(req, CompletionRequest) and req.suffix:
        raise bad_request("suffix (insertion) is not supported; remove it", "suffix")
    if any(not s for s in req.stop_strings()):
        raise bad_request("stop strings must not be empty", "stop")


def requested_logprobs(req: SamplingFields) -> int | None:
    """The top-N count the engine should return, or None for no logprobs."""
    if isinstance(req, ChatCompletionRequest):
        if req.top_logprobs is not None and not req.logprobs:
            raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
        count = (req.top_logprobs or 0) if req.logprobs else None
        param = "top_logprobs"
    else:
        assert isinstance(req, CompletionRequest)
        count, param = req.logprobs, "logprobs"
    if count is not None and not 0 <= count <= MAX_LOGPROBS:
        raise bad_request(f"{param} must be in [0, {MAX_LOGPROBS}], got {count}", param)
    return count


def resolve_max_tokens(req: SamplingFields, num_prompt_tokens: int, max_model_len: int) -> int:
    """The requested max_tokens, checked against the context; when absent, what is left of
    the context (chat) or 16 (completions, as in OpenAI's legacy API)."""
    room = max_model_len - num_prompt_tokens
    if room < 1:
        raise bad_request(
            f"the prompt has {num_prompt_tokens} tokens but the model's context is "
            f"{max_model_len}; shorten the prompt",
            "messages" if isinstance(req, ChatCompletionRequest) else "prompt",
        )
    requested = req.max_tokens
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        requested = req.max_completion_tokens
    if requested is None:
        return room if isinstance(req, ChatCompletionRequest) else min(16, room)
    if requested == 0 and isinstance(req, CompletionRequest):
        return 0  # echo's scoring request; plan_decoding checks it
    if requested < 1:
        raise bad_request(f"max_tokens must be >= 1, got {requested}", "max_tokens")
    if requested > room:
        raise bad_request(
            f"max_tokens ({requested}) plus the prompt ({num_prompt_tokens} tokens) exceeds the "
            f"model's context ({max_model_len}); ask for at most {room} tokens",
            "max_tokens",
        )
    return requested


def to_sampling_params(
    req: SamplingFields, max_tokens: int, logprobs: int | None, plan: DecodingPlan
) -> SamplingParams:
    """Build the engine's SamplingParams; its validation errors become 400s. Scoring the
    prompt (max_tokens 0) samples one token the router drops: the prefill computes its
    logits anyway."""
    if plan.ranks_samples and logprobs is None:
        logprobs = 0  # ranking best_of samples needs each token's log-probability
    temperature = 1.0 if req.temperature is None else req.temperature
    try:
        return SamplingParams(
            max_tokens=max(max_tokens, 1),
            min_tokens=req.min_tokens,
            temperature=0.0 if plan.greedy else temperature,
            top_k=req.top_k,
            top_p=1.0 if req.top_p is None else req.top_p,
            min_p=req.min_p,
            repetition_penalty=req.repetition_penalty,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            seed=req.seed,
            stop_token_ids=tuple(req.stop_token_ids or ()),
            ignore_eos=req.ignore_eos,
            logprobs=logprobs,
            n=plan.num_samples,
            beam_width=plan.beam_width,
            length_penalty=req.length_penalty,
            prompt_logprobs=plan.prompt_logprobs,
        )
    except ValueError as e:
        raise engine_value_error(e) from e


def engine_value_error(error: ValueError) -> APIError:
    """A ValueError from SamplingParams or the engine, as a 400 naming the field it is about
    (the messages start with the field name, e.g. "top_p must be in (0, 1]")."""
    message = str(error)
    first = message.split(" ", 1)[0]
    return bad_request(message, first if first in _FIELD_NAMES else None)


_FIELD_NAMES = (
    set(SamplingParams.__dataclass_fields__)
    | set(CompletionRequest.model_fields)
    | set(ChatCompletionRequest.model_fields)
)
