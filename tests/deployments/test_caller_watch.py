"""CallerWatch without a cluster: a caller that is gone gets its requests aborted."""

from __future__ import annotations

import asyncio

from deployments.caller_watch import CallerWatch

ALIVE, DEAD = ("router-a", "serve"), ("router-b", "serve")


def test_only_the_dead_callers_requests_are_aborted_and_only_while_running():
    aborted: list[str] = []
    watch = CallerWatch(aborted.append, is_alive=lambda caller: caller != DEAD, period_s=0.01)

    async def main() -> None:
        task = asyncio.create_task(watch.run())
        with watch.watching(ALIVE, "a1"), watch.watching(DEAD, "b1"), watch.watching(DEAD, "b2"):
            await asyncio.sleep(0.05)
        with watch.watching(DEAD, "b3"):
            pass  # finished before any check: nothing to abort
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(main())
    assert sorted(aborted) == ["b1", "b2"]
    assert watch.num_orphans_aborted == 2


def test_requests_without_a_caller_are_not_watched():
    watch = CallerWatch(lambda _: None, is_alive=lambda _: False)
    with watch.watching(None, "x"):
        assert not watch._requests
