"""Objects alive when the engine loop starts are frozen out of the garbage collector's walks
while it runs, and handed back when it stops."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from tests.factories import make_engine
from workers.async_engine import AsyncEngine
from workers.gc_freeze import freeze_long_lived_objects, long_lived_objects_frozen


def test_frozen_inside_the_block_and_collectable_after() -> None:
    before = gc.get_freeze_count()
    with long_lived_objects_frozen():
        assert gc.get_freeze_count() > before
        cycle: list = []
        cycle.append(cycle)  # made after the freeze: still collected
        del cycle
        assert gc.collect() > 0
    assert gc.get_freeze_count() == 0


def test_engine_loop_runs_frozen_and_unfreezes_on_shutdown(llama_dir: Path) -> None:
    engine = AsyncEngine(make_engine(llama_dir))
    try:
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        engine.shutdown()
    assert gc.get_freeze_count() == 0


def test_freezing_for_the_process_keeps_new_garbage_collectable() -> None:
    try:
        freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() > 0
    finally:
        gc.unfreeze()
