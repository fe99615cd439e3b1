"""Batched prompts: a completions request with a list of prompts runs one engine request
per prompt (each with its n choices), and answers as one response: choice indices run on
across the prompts (prompt i's choices start at i * n) and usage is summed, as OpenAI does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from router.responses import Usage
from router.sse import DONE, event

if TYPE_CHECKING:
    from router.generation import Generation
    from router.prepared import PreparedRequest
    from router.service import OpenAIService, Result


def batch_of(prepared: Sequence[PreparedRequest]) -> list[PreparedRequest]:
    """The prompts' requests, sharing the first one's response id, indices offset."""
    shared = prepared[0].response_id
    out = []
    offset = 0
    for p in prepared:
        out.append(replace(p, choice_offset=offset, batch_id=shared))
        offset += p.num_returned_choices
    return out


async def run_batch(service: OpenAIService, batch: list[PreparedRequest]) -> Result:
    generations: list[Generation] = []
    try:
        for prepared in batch:  # admitted and dispatched before anything is sent
            generations.append(await service.start(prepared))
    except BaseException:
        for generation in generations:
            await generation.close()
        raise
    if batch[0].output.stream:
        return _merged_events(generations)
    return await _merged_response(generations)


async def _merged_response(generations: list[Generation]) -> dict[str, Any]:
    try:
        async with asyncio.TaskGroup() as group:  # one failure cancels (aborts) the rest
            tasks = [group.create_task(g.response()) for g in generations]
    except* Exception as errors:
        raise errors.exceptions[0] from None
    bodies = [t.result() for t in tasks]
    merged = dict(bodies[0])
    merged["choices"] = [c for body in bodies for c in body["choices"]]
    merged["usage"] = _total(generations).body()
    return merged


async def _merged_events(generations: list[Generation]) -> AsyncIterator[str]:
    """Every prompt's chunks as they come; the first error event ends the whole stream."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump(generation: Generation) -> None:
        try:
            async with aclosing(generation.events(final=False)) as events:
                async for item in events:
                    await queue.put(item)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(g)) for g in generations]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            yield item
            if item.startswith('data: {"error"'):
                return
        if generations[0].prepared.output.include_usage:
            yield event(generations[0].usage_chunk(_total(generations)))
        yield DONE
    finally:
        for task in tasks:
            task.cancel()
        for generation in generations:
            await generation.close()


def _total(generations: list[Generation]) -> Usage:
    usages = [g.usage for g in generations]
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
    )
