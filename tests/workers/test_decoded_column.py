"""The decodes' tokens come back as one column (ModelRunnerOutput.decoded): in column order,
NO_TOKEN where the column's request failed, from the greedy path, the host-logits path and
the request-by-request re-run alike."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from workers.fault_isolation import run_isolated
from workers.model_runner import _argmax_decodes, _greedy_output, _without_failed
from workers.request_failure import RequestFailure
from workers.running_decodes import NO_TOKEN, RunningDecodes
from workers.scheduler_output import ModelRunnerOutput, SchedulerOutput


def columns(n: int) -> RunningDecodes:
    return RunningDecodes(
        seq_ids=tuple(range(10, 10 + n)),
        request_ids=tuple(f"r{j}" for j in range(n)),
        token_ids=(5,) * n,
        positions=(3,) * n,
    )


@given(st.lists(st.tuples(st.integers(0, 511), st.booleans()), min_size=1, max_size=20))
def test_greedy_output_column(rows: list[tuple[int, bool]]) -> None:
    decodes = columns(len(rows))
    ids = [float(t) for t, _ in rows]
    finite = [1.0 if ok else 0.0 for _, ok in rows]
    packed = torch.tensor([ids, [0.0] * len(rows), finite], dtype=torch.float64)
    output = _greedy_output((), packed, decodes)
    assert not output.sampled
    assert output.decoded == tuple(t if ok else NO_TOKEN for t, ok in rows)
    assert all(isinstance(t, int) for t in output.decoded)
    assert {f.request_id for f in output.failed} == {
        f"r{j}" for j, (_, ok) in enumerate(rows) if not ok
    }


def test_argmax_decodes_fails_non_finite_rows() -> None:
    decodes = columns(3)
    logits = torch.zeros(4, 8)
    logits[1, 6] = logits[2, 2] = logits[3, 7] = 1.0  # row 0 belongs to a ScheduledSeq
    logits[2, 0] = math.nan
    finite = torch.isfinite(logits).all(-1).tolist()
    failed: dict[str, RequestFailure] = {}
    decoded = _argmax_decodes(decodes, logits, finite, failed)
    assert decoded[0] == 6 and decoded[2] == 7
    assert set(failed) == {"r1"}
    output = ModelRunnerOutput({}, {}, tuple(failed.values()), decoded=decoded)
    kept = _without_failed(output, [], decodes=decodes)
    assert kept.decoded == (6, NO_TOKEN, 7)


class Runner:
    """Each request's column decodes 100 + its seq id; request r1's forward raises."""

    def __init__(self) -> None:
        self.steps: list[SchedulerOutput] = []

    def copy_blocks(self, copies: tuple[tuple[int, int], ...]) -> None:
        pass

    def execute(self, step: SchedulerOutput) -> ModelRunnerOutput:
        self.steps.append(step)
        assert step.decodes is not None
        if "r1" in step.decodes.request_ids:
            raise RuntimeError("boom")
        return ModelRunnerOutput({}, {}, decoded=tuple(100 + s for s in step.decodes.seq_ids))


def test_run_isolated_merges_the_column() -> None:
    runner = Runner()
    output = run_isolated(runner, SchedulerOutput((), decodes=columns(3)))
    assert len(runner.steps) == 3
    assert output.decoded == (110, NO_TOKEN, 112)
    assert [f.request_id for f in output.failed] == ["r1"]
