"""InputBatch (the runner's persistent batch) against a from-scratch rebuild: after any
sequence of adds, block appends, copy-on-write replacements, trims, sampled tokens,
finishes, preemptions and forks, every row's block table and token history equal the
sequence's own, the rows stay dense and padding entries stay 0."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.input_batch import InputBatch
from workers.kv_cache.table_changes import BlockUpdate
from workers.protocol import TokenLogprob
from workers.sampling_params import SamplingParams
from workers.scheduler_output import ModelRunnerOutput, NewSeq, ScheduledSeq

GREEDY = SamplingParams(temperature=0)


@dataclass
class Truth:
    """A sequence as the scheduler knows it, and what the runner was last sent."""

    tokens: list[int]
    num_prompt: int
    table: list[int]
    sent_blocks: int = 0  # entries the runner holds unchanged
    held: bool = False
    changed_from: int | None = None
    extra: dict = field(default_factory=dict)


def scheduled(seq_id: int, truth: Truth, sample: bool = True) -> ScheduledSeq:
    """The step's sequence as the scheduler sends it (a decode of its last token)."""
    if not truth.held:
        blocks, new = (
            BlockUpdate(0, tuple(truth.table)),
            NewSeq(tuple(truth.tokens), truth.num_prompt),
        )
    else:
        kept = len(truth.table) if truth.changed_from is None else truth.changed_from
        kept = min(kept, len(truth.table))
        blocks, new = BlockUpdate(kept, tuple(truth.table[kept:])), None
    return ScheduledSeq(
        seq_id=seq_id,
        request_id=str(seq_id),
        token_ids=(truth.tokens[-1],),
        start_pos=len(truth.tokens) - 1,
        block_table=tuple(truth.table),
        sample=sample,
        sampling=GREEDY,
        blocks=blocks,
        new=new,
    )


def check(batch: InputBatch, truths: dict[int, Truth]) -> None:
    held = {s for s, t in truths.items() if t.held}
    assert set(batch.row_of) == held
    assert sorted(batch.row_of.values()) == list(range(batch.num_rows))  # dense
    for seq_id in held:
        truth = truths[seq_id]
        row = batch.row_of[seq_id]
        assert batch.seq_ids[row] == seq_id
        assert batch.history(seq_id) == truth.tokens
        prompt, outputs = batch.prompt_and_outputs(seq_id)
        assert list(prompt + outputs) == truth.tokens and len(prompt) == truth.num_prompt
        if truth.changed_from is None:
            assert batch.block_table(seq_id) == truth.table
    # entries past a row's blocks (and rows past the last) are 0: gathered tables are padded
    for row in range(batch.tables.shape[0]):
        width = batch.num_blocks[row] if row < batch.num_rows else 0
        assert not np.any(batch.tables[row, width:])


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "step", "append", "cow", "trim", "finish", "preempt", "fork"]),
        st.integers(0, 10**6),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_batch_equals_a_rebuild_after_random_operations(ops: list[tuple[str, int]]) -> None:
    batch = InputBatch(rows=2, max_blocks=2, max_tokens=4)  # small: growth is exercised
    truths: dict[int, Truth] = {}
    live: list[int] = []
    next_id, next_block = 0, 1000
    freed: list[int] = []

    def fresh_block() -> int:
        nonlocal next_block
        next_block += 1
        return next_block

    def step(chosen: list[int]) -> None:
        """One step: the freed rows go, the chosen sequences' differences are applied,
        each samples a token that the runner records and the scheduler appends."""
        seqs = tuple(scheduled(s, truths[s]) for s in chosen)
        batch.remove(freed)
        freed.clear()
        batch.update(seqs)
        for s in chosen:
            truths[s].held, truths[s].changed_from = True, None
        check(batch, truths)
        out: dict[int, tuple[TokenLogprob, ...]] = {
            s.seq_id: (TokenLogprob(10 + s.seq_id % 7, -1.0),) for s in seqs
        }
        batch.record(seqs, ModelRunnerOutput(out, {}))
        for s in chosen:
            truths[s].tokens.append(10 + s % 7)

    def change(truth: Truth, index: int) -> None:
        if truth.changed_from is None or index < truth.changed_from:
            truth.changed_from = index

    def free(seq_id: int) -> None:
        truth = truths[seq_id]
        if truth.held:
            freed.append(seq_id)
        truth.held, truth.changed_from, truth.table = False, None, []

    for op, arg in ops:
        if op == "add" or not live:
            length = 1 + arg % 9
            truths[next_id] = Truth(
                [3 + (arg + i) % 50 for i in range(length)],
                length,
                [fresh_block() for _ in range(1 + length // 4)],
            )
            live.append(next_id)
            next_id += 1
            continue
        seq_id = live[arg % len(live)]
        truth = truths[seq_id]
        if op == "step":
            step([s for s in live if truths[s].table][: 1 + arg % 5])
        elif op == "append" and truth.table:
            change(truth, len(truth.table))
            truth.table += [fresh_block() for _ in range(1 + arg % 3)]
        elif op == "cow" and truth.table:
            index = arg % len(truth.table)
            change(truth, index)
            truth.table[index] = fresh_block()
        elif op == "trim" and len(truth.table) > 1:
            keep = 1 + arg % (len(truth.table) - 1)
            change(truth, keep)
            del truth.table[keep:]
        elif op == "finish":
            free(seq_id)
            live.remove(seq_id)
        elif op == "preempt":  # blocks freed; readmitted later whole, with its tokens
            free(seq_id)
            truth.table = [fresh_block() for _ in range(1 + len(truth.tokens) // 4)]
        elif op == "fork":  # shares the parent's tokens and blocks; new to the runner
            truths[next_id] = Truth(list(truth.tokens), truth.num_prompt, list(truth.table))
            live.append(next_id)
            next_id += 1
    step([s for s in live if truths[s].table])


def test_placeholder_token_is_recorded_when_its_step_comes_back() -> None:
    """Async scheduling: a step is launched while the one before it is in flight; its
    token is recorded once that step's output is known, after the next step was applied."""
    batch = InputBatch()
    truth = Truth([5, 6, 7], 3, [1])
    first = scheduled(0, truth)
    batch.update((first,))
    ahead = ScheduledSeq(0, "0", (-1,), 3, (1, 2), True, GREEDY, blocks=BlockUpdate(1, (2,)))
    batch.update((ahead,))  # launched before `first` is back
    assert batch.history(0) == [5, 6, 7]
    batch.record((first,), ModelRunnerOutput({0: (TokenLogprob(8, -1.0),)}, {}))
    batch.record((ahead,), ModelRunnerOutput({0: (TokenLogprob(9, -1.0),)}, {}))
    assert batch.history(0) == [5, 6, 7, 8, 9]
    assert batch.block_table(0) == [1, 2]


def test_accepted_drafts_overwrite_their_positions() -> None:
    batch = InputBatch()
    base = Truth([5, 6, 7], 3, [1, 2])
    s = scheduled(0, base)
    drafted = ScheduledSeq(
        0, "0", (7, 40, 41), 2, (1, 2), True, GREEDY, blocks=s.blocks, new=s.new,
        spec_token_ids=(40, 41),
    )  # fmt: skip
    batch.update((drafted,))
    out = ModelRunnerOutput({0: (TokenLogprob(40, -1.0), TokenLogprob(30, -1.0))}, {})
    batch.record((drafted,), out)  # one draft accepted, the second corrected to 30
    assert batch.history(0) == [5, 6, 7, 40, 30]


def test_a_dropped_sequence_ignores_its_late_output() -> None:
    batch = InputBatch()
    s = scheduled(0, Truth([5, 6], 2, [1]))
    batch.update((s,))
    batch.remove([0])
    batch.record((s,), ModelRunnerOutput({0: (TokenLogprob(9, -1.0),)}, {}))
    assert 0 not in batch and batch.num_rows == 0
