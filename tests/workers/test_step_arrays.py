"""The step inputs gathered from the persistent batch (workers/step_arrays.py) equal those
built sequence by sequence from each ScheduledSeq's own block table: the flat rows of the
eager forward and the front-padded rows the CUDA graphs replay (checked here on the host,
where no graph can be captured)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.input_batch import InputBatch
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ScheduledSeq
from workers.step_arrays import gather, graph_rows

BS = 4
SCRATCH = 99 * BS


def random_step(rng: random.Random, max_tokens: int, prompt_rows: bool) -> tuple[ScheduledSeq, ...]:
    seqs = []
    for seq_id in range(rng.randint(1, 6)):
        num_tokens = rng.randint(1, max_tokens)
        start = rng.randint(0, 20)
        table = tuple(rng.sample(range(1, 90), -(-(start + num_tokens) // BS) + rng.randint(0, 1)))
        sample = rng.random() < 0.8
        spec = tuple(rng.randrange(3, 50) for _ in range(num_tokens - 1)) if sample else ()
        first = rng.randint(start, start + num_tokens - 1)
        rows = rng.randint(0, start + num_tokens - first - 1) if prompt_rows else 0
        seqs.append(
            ScheduledSeq(
                seq_id=seq_id * 7,
                request_id=str(seq_id),
                token_ids=tuple(rng.randrange(3, 50) for _ in range(num_tokens)),
                start_pos=start,
                block_table=table,
                sample=sample,
                sampling=SamplingParams(temperature=0),
                spec_token_ids=spec if rng.random() < 0.5 else (),
                prompt_row_start=first if rows else 0,
                num_prompt_rows=rows,
            )
        )
    return tuple(seqs)


def reference_flat(seqs: tuple[ScheduledSeq, ...]) -> dict[str, list]:
    """The inputs as the runner built them before the persistent batch, per sequence."""
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    query_start = [0]
    seq_lens: list[int] = []
    logits: list[int] = []
    for s in seqs:
        ids += s.token_ids
        span = range(s.start_pos, s.start_pos + s.num_tokens)
        positions += span
        slots += [s.block_table[p // BS] * BS + p % BS for p in span]
        query_start.append(len(ids))
        seq_lens.append(span.stop)
        if s.num_prompt_rows:
            first = query_start[-2] + s.prompt_row_start - s.start_pos
            logits += range(first, first + s.num_prompt_rows)
        logits += range(len(ids) - s.num_sample_rows, len(ids))
    width = max(len(s.block_table) for s in seqs)
    tables = [list(s.block_table) + [0] * (width - len(s.block_table)) for s in seqs]
    return dict(
        input_ids=ids,
        positions=positions,
        slots=slots,
        query_start_loc=query_start,
        seq_lens=seq_lens,
        block_tables=tables,
        logits_indices=logits,
    )


def reference_graph(
    seqs: tuple[ScheduledSeq, ...], width: int, lora: list[int] | None
) -> tuple[list[int], ...]:
    ids: list[int] = []
    pos: list[int] = []
    slot: list[int] = []
    slots_of_rows: list[int] = []
    keep: list[int] = []
    for i, s in enumerate(seqs):
        pad = width - s.num_tokens
        first = s.start_pos - pad
        positions = range(first, first + width)
        ids += (0,) * pad + s.token_ids
        pos += [max(p, 0) for p in positions]
        slot += [
            SCRATCH if p < s.start_pos else s.block_table[p // BS] * BS + p % BS for p in positions
        ]
        slots_of_rows += [-1 if lora is None else lora[i]] * width
        keep += range((i + 1) * width - s.num_sample_rows, (i + 1) * width)
    lens = [s.start_pos + s.num_tokens for s in seqs]
    return ids, pos, slot, slots_of_rows, lens, keep


def batch_of(seqs: tuple[ScheduledSeq, ...]) -> InputBatch:
    batch = InputBatch(rows=1, max_blocks=1)
    batch.update(seqs)  # no `blocks`: each takes its whole table
    return batch


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 5), st.booleans())
def test_flat_inputs_equal_the_per_sequence_build(seed: int, tokens: int, prompt: bool) -> None:
    seqs = random_step(random.Random(seed), tokens, prompt)
    arrays = gather(batch_of(seqs), seqs, BS)
    expected = reference_flat(seqs)
    for name, values in expected.items():
        assert getattr(arrays, name).tolist() == values, name


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 4), st.booleans())
def test_graph_rows_equal_the_per_sequence_fill(seed: int, width: int, with_lora: bool) -> None:
    rng = random.Random(seed)
    seqs = tuple(s for s in random_step(rng, width, False) if s.sample)
    if not seqs:
        return
    lora = [rng.randint(-1, 2) for _ in seqs] if with_lora else None
    rows = graph_rows(batch_of(seqs), seqs, width, BS, SCRATCH, lora)
    ids, pos, slot, slots_of_rows, lens, keep = reference_graph(seqs, width, lora)
    assert rows.input_ids.tolist() == ids
    assert rows.positions.tolist() == pos
    assert rows.slots.tolist() == slot
    assert rows.adapter_slots.tolist() == slots_of_rows
    assert rows.seq_lens.tolist() == lens
    assert rows.keep.tolist() == keep
    for i, s in enumerate(seqs):
        assert rows.block_tables[i, : len(s.block_table)].tolist() == list(s.block_table)
