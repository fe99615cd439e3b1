"""The one-line progress report printed while a run goes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadtest.records import RequestRecord

WINDOW_S = 10.0


def progress_line(
    elapsed_s: float, duration_s: float, users: int, records: Sequence[RequestRecord]
) -> str:
    """Totals so far, and rates and median TTFT over the last WINDOW_S seconds."""
    failures = sum(1 for r in records if not r.outcome.ok)
    since = max(elapsed_s - WINDOW_S, 0.0)
    window = max(elapsed_s - since, 1e-9)
    recent = [r for r in records if r.end_s >= since and r.outcome.ok]
    tokens = sum(r.outcome.output_tokens for r in recent)
    ttfts = [r.outcome.ttft_s for r in recent if r.outcome.ttft_s is not None]
    ttft = f"{np.median(ttfts) * 1000:.0f} ms" if ttfts else "-"
    return (
        f"[{elapsed_s:5.0f}/{duration_s:.0f} s] users {users:3d} | requests {len(records)} "
        f"failed {failures} | {len(recent) / window:.2f} req/s {tokens / window:.1f} tok/s "
        f"| TTFT p50 {ttft}"
    )
