"""Async scheduling: step N+1 is scheduled and queued while step N's tokens are on their
way. Whatever overlaps, users see the same tokens, stops and finish reasons as without it,
and every block comes back."""

from __future__ import annotations

from pathlib import Path

from tests.factories import hf_greedy, make_engine, random_prompts
from workers.engine import LLMEngine
from workers.protocol import FinishReason, GenerateRequest, TokenDelta
from workers.sampling_params import SamplingParams


def run(engine: LLMEngine, specs: list[GenerateRequest]) -> dict[tuple[str, int], list]:
    """Every delta's tokens, logprobs and finish reason per (request, sample)."""
    for spec in specs:
        engine.add_request(spec)
    seen: dict[tuple[str, int], list] = {}
    while engine.has_unfinished():
        for d in engine.step():
            seen.setdefault((d.request_id, d.index), []).append(_view(d))
    return seen


def _view(d: TokenDelta) -> tuple:
    logprobs = None
    if d.logprobs is not None:
        logprobs = [
            (t.token_id, None if t.logprob is None else round(t.logprob, 5)) for t in d.logprobs
        ]
    return d.token_ids, logprobs, d.finish_reason, d.num_generated_tokens


def test_greedy_steps_overlap_and_match_transformers(llama_dir: Path, llama_hf) -> None:
    prompts = random_prompts([5, 9, 17, 30, 3, 12])
    lengths = [16, 1, 7, 16, 2, 11]
    engine = make_engine(llama_dir, async_scheduling=True)
    for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
        params = SamplingParams(max_tokens=n, temperature=0)
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), params))
    out: dict[str, list[int]] = {}
    overlapped = 0
    while engine.has_unfinished():
        for d in engine.step():
            out.setdefault(d.request_id, []).extend(d.token_ids)
        overlapped += engine.step_in_flight
    assert overlapped > 10
    for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
        assert out[f"r{i}"] == hf_greedy(llama_hf, p, n)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_stops_inside_an_overlapped_run_end_the_sequence_there(llama_dir: Path) -> None:
    """A stop token found after the next step was queued: that step's token is dropped."""
    prompt = tuple(random_prompts([11])[0])
    free = run(make_engine(llama_dir), [GenerateRequest("a", prompt, _greedy(12))])
    tokens = [t for chunk in free["a", 0] for t in chunk[0]]
    stop = tokens[5]
    engine = make_engine(llama_dir, async_scheduling=True)
    params = SamplingParams(max_tokens=12, temperature=0, stop_token_ids=(stop,), logprobs=0)
    got = run(engine, [GenerateRequest("a", prompt, params)])
    streamed = [t for chunk in got["a", 0] for t in chunk[0]]
    assert streamed == tokens[: tokens.index(stop) + 1]
    assert got["a", 0][-1][2] == FinishReason.STOP
    assert got["a", 0][-1][3] == len(streamed)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def mixed_workload() -> list[GenerateRequest]:
    """Greedy requests (which overlap) among seeded sampling, n, beams, penalties,
    min_tokens and top logprobs (which do not), arriving together."""
    prompts = random_prompts([7, 13, 4, 21, 9, 16, 6, 11, 5, 8], seed=3)
    kinds = [
        _greedy(14),
        SamplingParams(max_tokens=9, temperature=0.8, seed=4),
        _greedy(5),
        SamplingParams(max_tokens=6, temperature=1.0, n=2, seed=7),
        SamplingParams(max_tokens=5, beam_width=2),
        SamplingParams(max_tokens=10, temperature=0, repetition_penalty=1.3),
        SamplingParams(max_tokens=8, temperature=0, min_tokens=6, stop_token_ids=(2,)),
        SamplingParams(max_tokens=12, temperature=0, logprobs=2),
        SamplingParams(max_tokens=30, temperature=0, logprobs=0),
        _greedy(40),
    ]
    return [
        GenerateRequest(f"r{i}", tuple(p), params)
        for i, (p, params) in enumerate(zip(prompts, kinds, strict=True))
    ]


def test_mixed_workload_is_the_same_with_and_without_overlap(llama_dir: Path) -> None:
    sync = make_engine(llama_dir, max_num_batched_tokens=24, async_scheduling=False)
    overlap = make_engine(llama_dir, max_num_batched_tokens=24, async_scheduling=True)
    assert run(overlap, mixed_workload()) == run(sync, mixed_workload())
    assert overlap.stats().num_free_blocks == overlap.stats().num_total_blocks


def test_abort_while_a_step_is_in_flight(llama_dir: Path, llama_hf) -> None:
    prompts = random_prompts([9, 14])
    engine = make_engine(llama_dir, async_scheduling=True)
    for i, p in enumerate(prompts):
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), _greedy(10)))
    kept: list[int] = []
    for _ in range(4):
        kept += [t for d in engine.step() if d.request_id == "r1" for t in d.token_ids]
    assert engine.step_in_flight
    (aborted,) = engine.abort("r0")
    assert aborted.finish_reason == FinishReason.ABORT
    while engine.has_unfinished():
        deltas = engine.step()
        assert all(d.request_id == "r1" for d in deltas)
        kept += [t for d in deltas for t in d.token_ids]
    assert kept == hf_greedy(llama_hf, prompts[1], 10)
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks
    assert engine.kv.block_tables == {}


def test_out_of_blocks_ahead_waits_for_the_step_and_preempts_then(
    llama_dir: Path, llama_hf
) -> None:
    """Scheduling ahead never preempts (tokens in flight cannot be recomputed); a full
    cache makes the next step synchronous, and that one preempts."""
    prompts = random_prompts([10, 10, 10, 10], seed=5)
    engine = make_engine(llama_dir, num_blocks=16, block_size=4, async_scheduling=True)
    got = run(
        engine, [GenerateRequest(f"r{i}", tuple(p), _greedy(16)) for i, p in enumerate(prompts)]
    )
    assert engine.scheduler.num_preemptions > 0
    for i, p in enumerate(prompts):
        assert [t for chunk in got[f"r{i}", 0] for t in chunk[0]] == hf_greedy(llama_hf, p, 16)
    assert engine.stats().num_free_blocks == 16


def _greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0)


def test_no_step_is_queued_past_the_last_token(llama_dir: Path) -> None:
    """A sequence whose token in flight is its max_tokens-th is not scheduled again: when
    every request ends on length, nothing is left running on the device."""
    engine = make_engine(llama_dir, async_scheduling=True)
    for i, p in enumerate(random_prompts([6, 8, 12])):
        engine.add_request(GenerateRequest(f"r{i}", tuple(p), _greedy(7)))
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
    assert not engine.step_in_flight
    assert steps == 7  # one prefill step (that samples the first token), then 6 decodes


def test_no_step_is_queued_past_the_context(llama_dir: Path) -> None:
    """Likewise for a token in flight that fills the model's context (max_model_len)."""
    engine = make_engine(llama_dir, async_scheduling=True, max_model_len=16)
    engine.add_request(GenerateRequest("r", tuple(random_prompts([9])[0]), _greedy(100)))
    steps, tokens = 0, list[int]()
    while engine.has_unfinished():
        for d in engine.step():
            tokens += d.token_ids
            reason = d.finish_reason
        steps += 1
    assert not engine.step_in_flight
    assert len(tokens) == 7 and reason == FinishReason.LENGTH  # 9 + 7 = 16 tokens
    assert steps == 7
    assert engine.stats().num_free_blocks == engine.stats().num_total_blocks


def test_block_copies_of_a_step_ahead_that_schedules_nothing_still_happen(
    llama_dir: Path,
) -> None:
    """A step scheduled ahead can give a sample a copy-on-write block and then stop (out of
    blocks) before it schedules anything: the copy must still happen, or that sample reads
    an uninitialised block. Same tokens and log-probabilities as without async scheduling."""
    forked, short = random_prompts([22, 27], seed=7)

    def outputs(async_scheduling: bool) -> dict:
        engine = make_engine(
            llama_dir,
            num_blocks=14,
            block_size=4,
            max_num_batched_tokens=16,
            async_scheduling=async_scheduling,
        )
        samples = SamplingParams(n=3, temperature=0, max_tokens=6, logprobs=0)
        engine.add_request(GenerateRequest("n3", tuple(forked), samples, priority=1))
        engine.step()
        first = GenerateRequest("one", tuple(short), _greedy(1), priority=0)
        seen = run(engine, [first])
        assert engine.stats().num_free_blocks == engine.stats().num_total_blocks
        return seen

    assert outputs(True) == outputs(False)
