"""The GPU suite's peer columns: benchmarks.hf_static_peer (transformers generate, static cache,
compiled decode) run on the suite's own checkpoint in a process of its own (its compiled
graphs, CUDA-graph pools and dynamo state never touch Tandem's runs, and all its memory is
back when it exits), its figures then set beside Tandem's rows.

Every row gets two keys, so the table keeps one set of columns: `peer`, the peer's figure for
the same measure (its step time for a decode row at that batch, its tok/s for the serving row;
0.0 where it has none), and `vs_peer`, the row's value over it (for a decode row: Tandem's step
over the peer's, below 1 where Tandem is faster).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER = "transformers static+compile"
DECODE = re.compile(r"^decode step, batch (\d+),")
SERVING = "serving output tokens/s (tandem)"


def run_peer(
    model_dir: Path, batches: tuple[int, ...], timeout_s: float, extra: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """The peer's payload, or None (after saying why) if it failed or ran out of time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.hf_static_peer",
            "--model-dir",
            str(model_dir),
            "--batches",
            ",".join(map(str, batches)),
            "--out",
            str(out),
            *extra,
        ]
        try:
            subprocess.run(command, cwd=ROOT, check=True, timeout=timeout_s)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"peer ({PEER}) left out: {error}")
            return None
        payload: dict[str, Any] = json.loads(out.read_text())
        return payload


def peer_steps(peer: dict[str, Any] | None) -> dict[int, float]:
    return {int(r["batch"]): float(r["step_ms"]) for r in (peer or {}).get("decode", [])}


def peer_serving(peer: dict[str, Any] | None) -> float:
    """The peer's best static batch, as the suite takes transformers' dynamic-cache best."""
    return max((float(r["tokens_per_s"]) for r in (peer or {}).get("serving", [])), default=0.0)


def peer_figure(row: dict[str, Any], peer: dict[str, Any] | None) -> float:
    if match := DECODE.match(str(row["measure"])):
        return peer_steps(peer).get(int(match.group(1)), 0.0)
    return peer_serving(peer) if row["measure"] == SERVING else 0.0


def with_peer(rows: list[dict[str, Any]], peer: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rows with the `peer` and `vs_peer` columns (see the module's docstring)."""
    out = []
    for row in rows:
        figure = peer_figure(row, peer)
        value = float(row["value"])
        out.append({**row, "peer": figure, "vs_peer": value / figure if figure else 0.0})
    return out


def peer_rows(peer: dict[str, Any] | None, floors: dict[int, float]) -> list[dict[str, Any]]:
    """The peer's own decode rows against the suite's floor at the same batch."""
    rows = [
        _row(f"decode step, batch {batch}, {PEER}", ms, "ms", floors.get(batch, 0.0))
        for batch, ms in peer_steps(peer).items()
    ]
    if serving := peer_serving(peer):
        rows.append(_row(f"serving output tokens/s ({PEER}, best batch)", serving, "tok/s"))
    return rows


def _row(measure: str, value: float, unit: str, floor: float = 0.0) -> dict[str, Any]:
    """A row as gpu_suite.row makes it (that module imports this one)."""
    ratio = value / floor if floor else 0.0
    return {"measure": measure, "value": value, "unit": unit, "floor": floor, "ratio": ratio}
