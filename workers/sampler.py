"""Sampling as pure functions over a batch of logits, one set of parameters per row.

These are the per-row reference: the runner samples a whole step at once
(workers/step_sampling.py over workers/batch_sampler.py, drafts verified by
workers/spec/verify.py's verify_sampled, beams by workers/sampler_beams.py) and gives each
row exactly what these functions give it (tests/workers/test_batch_sampler.py,
test_step_sampling.py); the draft model samples its proposals with them directly.

Order of operations (as in vLLM): penalties, logit bias, min_tokens masking (the grammar's
token mask, workers/structured/, comes after these), then greedy argmax or
temperature, top-k, top-p, min-p and a draw from each row's own generator.

Numerically safe for every value SamplingParams accepts, given finite logits (the runner
fails a request whose row is not finite before it gets here): penalties and temperature
never turn a finite logit into inf or NaN, and no mask removes every token.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from workers.sampler_sort import sort_descending
from workers.sampling_params import SamplingParams

_NEG_INF = float("-inf")
_FP32_MAX = torch.finfo(torch.float32).max


def apply_penalties(
    logits: torch.Tensor,
    params: SamplingParams,
    prompt_ids: Sequence[int],
    output_ids: Sequence[int],
) -> torch.Tensor:
    """One row [vocab]: repetition penalty over prompt and output tokens (positive logits
    divided, negative multiplied), then frequency (times the count) and presence (once)
    penalties over output tokens. Returns a new tensor."""
    logits = logits.clone()
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(
            sorted(set(prompt_ids) | set(output_ids)), dtype=torch.long, device=logits.device
        )
        if seen.numel():
            # In float64 and clamped: a penalty near 0 or huge must not overflow to inf.
            vals = logits[seen].double()
            penalized = torch.where(
                vals > 0, vals / params.repetition_penalty, vals * params.repetition_penalty
            )
            logits[seen] = penalized.clamp(-_FP32_MAX, _FP32_MAX).to(logits.dtype)
    if output_ids and (params.frequency_penalty or params.presence_penalty):
        counts = torch.bincount(
            torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1]
        )[: logits.shape[-1]].to(logits.dtype)
        logits -= params.frequency_penalty * counts
        logits -= params.presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def apply_logit_bias(logits: torch.Tensor, bias: Sequence[tuple[int, float]]) -> torch.Tensor:
    """One row [vocab] plus each (token id, bias); ids were checked against the vocabulary.
    Biases are at most 100 in size: finite logits stay finite. Returns a new tensor."""
    ids = torch.tensor([t for t, _ in bias], dtype=torch.long, device=logits.device)
    values = torch.tensor([b for _, b in bias], dtype=logits.dtype, device=logits.device)
    return logits.index_add(-1, ids, values)


def mask_tokens(logits: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """logits with the given tokens set to -inf (min_tokens holds back stop tokens). When
    they are the whole vocabulary nothing would be left to draw: the row stays as it is."""
    if not token_ids or len(set(token_ids)) >= logits.shape[-1]:
        return logits
    logits = logits.clone()
    logits[..., list(token_ids)] = _NEG_INF
    return logits


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float, min_p: float) -> torch.Tensor:
    """One row [vocab] of temperature-scaled logits with excluded tokens at -inf.

    top_k keeps the k largest (0: all); top_p keeps the smallest set of most likely tokens
    whose probability reaches top_p; min_p drops tokens below min_p times the top probability.
    Each filter keeps at least the most likely token.
    """
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, _NEG_INF)
    if top_p < 1.0:
        sorted_logits, order = sort_descending(logits)  # ties in token order
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the ones before it already reach top_p; the best always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop_sorted[..., 0] = False  # also when top_p underflows to 0 in float32
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, _NEG_INF)
    if min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(), _NEG_INF)
    return logits


def processed_logits(
    logits: torch.Tensor,
    params: SamplingParams,
    prompt_ids: Sequence[int],
    output_ids: Sequence[int],
    stop_ids: Collection[int],
    num_outputs: int,
) -> torch.Tensor:
    """One raw row [vocab] after penalties, logit bias and min_tokens masking (stop tokens held back
    until min_tokens outputs exist). `output_ids` is read for penalties only (it may be
    empty without them); num_outputs counts the outputs so far."""
    if params.has_penalties:
        logits = apply_penalties(logits, params, prompt_ids, output_ids)
    if params.logit_bias:
        logits = apply_logit_bias(logits, params.logit_bias)
    if num_outputs < params.min_tokens:
        logits = mask_tokens(logits, sorted(stop_ids))
    return logits


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution the next token is drawn from, given a processed row [vocab]: one-hot
    at the argmax for greedy, else softmax of the temperature-scaled, filtered logits."""
    if params.greedy:
        return torch.nn.functional.one_hot(torch.argmax(logits), logits.shape[-1]).float()
    scaled = filter_logits(
        scale_by_temperature(logits, params.temperature), params.top_k, params.top_p, params.min_p
    )
    return scaled.softmax(-1)


def scale_by_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature for any finite temperature > 0: masked tokens (-inf) stay
    masked, and finite logits stay finite (a tiny temperature would overflow them to inf,
    whose softmax is NaN; a huge one, in float32 inf itself, gives 0 rather than -inf/inf)."""
    scaled = (logits / temperature).clamp(-_FP32_MAX, _FP32_MAX)
    return torch.where(torch.isfinite(logits), scaled, logits)


def draw(probs: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token from sampling_probs' distribution (greedy takes no randomness)."""
    if params.greedy:
        return int(torch.argmax(probs))
    return int(torch.multinomial(probs, 1, generator=generator))


def top_logprobs(logprobs: torch.Tensor, count: int) -> tuple[tuple[int, float], ...]:
    """The `count` most likely (token id, log-probability) pairs of one row, best first."""
    if count <= 0:
        return ()
    values, ids = torch.topk(logprobs, min(count, logprobs.shape[-1]))
    return tuple(zip(ids.tolist(), values.tolist(), strict=True))
