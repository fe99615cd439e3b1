"""CPU smoke runs of benchmarks.hf_static_peer (transformers generate, static cache, compiled
decode) on a tiny random Llama, and the suite's peer columns built from its payload."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import hf_static_peer
from benchmarks.common import save_random_llama
from benchmarks.gpu_suite import row
from benchmarks.suite_peer import peer_rows, run_peer, with_peer

SMALL = ["--device", "cpu", "--prompt-len", "16", "--short", "4", "--steps", "8"]
SMALL += ["--repeats", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("peer") / "tiny", **hf_static_peer.TINY)


def test_eager_static_cache_run(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "peer.json"
    argv = [*SMALL, "--model-dir", str(tiny_dir), "--batches", "1,3", "--compile", "none"]
    payload = hf_static_peer.main([*argv, "--serving-batches", "2", "--out", str(out)])
    assert out.is_file()
    assert [r["batch"] for r in payload["decode"]] == [1, 3]
    for r in payload["decode"]:
        # a smoke run: the step (a difference of two timings) is noise here, so only finite
        assert math.isfinite(r["step_ms"]) and r["first_call_s"] > 0 and not r["compiled"]
        assert r["path"].startswith("eager")
    assert [r["batch"] for r in payload["serving"]] == [2]
    assert payload["serving"][0]["tokens_per_s"] > 0


@pytest.mark.slow
def test_compiled_peer_through_the_suite_runner(tiny_dir: Path) -> None:
    """The suite's path: a process of its own, compiled (inductor on CPU), JSON back."""
    peer = run_peer(tiny_dir, (1, 2), timeout_s=300, extra=tuple(SMALL))
    assert peer is not None
    assert [r["batch"] for r in peer["decode"]] == [1, 2]
    assert all(r["compiled"] and math.isfinite(r["step_ms"]) for r in peer["decode"])
    assert all(r["fullgraph"] and not r["error"] for r in peer["decode"])


def test_peer_columns() -> None:
    peer = {
        "decode": [{"batch": 1, "step_ms": 4.0}, {"batch": 64, "step_ms": 5.0}],
        "serving": [{"tokens_per_s": 900.0}, {"tokens_per_s": 1000.0}],
    }
    rows = [
        row("decode step, batch 1, graphs", 1.0, "ms", 0.5),
        row("decode step, batch 64, graphs", 2.0, "ms", 1.0),
        row("serving output tokens/s (tandem)", 3000.0, "tok/s", 200.0),
        row("KV slots holding live tokens", 0.9, "fraction", 0.95),
    ]
    merged = with_peer(rows + peer_rows(peer, {1: 0.5, 64: 1.0}), peer)
    assert [(r["peer"], r["vs_peer"]) for r in merged[:4]] == [
        (4.0, 0.25),
        (5.0, 0.4),
        (1000.0, 3.0),
        (0.0, 0.0),
    ]
    own = {r["measure"]: r for r in merged[4:]}
    assert own["decode step, batch 64, transformers static+compile"]["ratio"] == 5.0
    assert own["serving output tokens/s (transformers static+compile, best batch)"]["value"] == 1000
    assert len({tuple(r) for r in merged}) == 1  # one set of columns for print_table


def test_no_peer_leaves_zero_columns() -> None:
    rows = [row("decode step, batch 1, eager", 1.0, "ms", 0.5)]
    assert with_peer(rows, None) == [{**rows[0], "peer": 0.0, "vs_peer": 0.0}]
    assert peer_rows(None, {1: 0.5}) == []
