from __future__ import annotations

import asyncio

import pytest

from router.admission import AdmissionConfig, AdmissionController
from router.errors import APIError


def test_past_running_and_waiting_bounds_requests_get_429_with_retry_after() -> None:
    async def main() -> None:
        admission = AdmissionController(AdmissionConfig(2, 1, retry_after_s=2.5))
        slots = [await admission.acquire(), await admission.acquire()]
        queued = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        assert admission.num_waiting == 1
        with pytest.raises(APIError) as refused:
            await admission.acquire()
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "3"
        slots[0].release()
        third = await asyncio.wait_for(queued, 1)  # the queued request was not dropped
        assert admission.num_running == 2 and admission.num_waiting == 0
        for slot in (slots[1], third, third):  # release is idempotent
            slot.release()
        assert admission.num_running == 0

    asyncio.run(main())


def test_waiters_are_served_in_arrival_order() -> None:
    async def main() -> list[int]:
        admission = AdmissionController(AdmissionConfig(1, 10))
        first = await admission.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            slot = await admission.acquire()
            order.append(i)
            slot.release()

        tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
        await asyncio.sleep(0)
        first.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    async def main() -> None:
        admission = AdmissionController(AdmissionConfig(1, 1))
        slot = await admission.acquire()
        waiter = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.num_waiting == 0
        slot.release()
        assert admission.num_running == 0
        (await admission.acquire()).release()

    asyncio.run(main())
