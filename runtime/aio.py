"""Small asyncio helpers for the tasks of the MQTT bus: racing, and cancelling cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def unless_ended(watchdog: asyncio.Task[None], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to its end, unless `watchdog` ends first: then cancel `work`, raise its error.

    Raises:
        Exception: What `work` raised, or what ended `watchdog`.
        RuntimeError: `watchdog` ended first without an error.
    """
    task = asyncio.create_task(work)
    try:
        done, _ = await asyncio.wait((task, watchdog), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # nothing when it is done; when we are cancelled, so is it
    if task in done:
        task.result()
        return
    await asyncio.wait((task,))
    watchdog.result()
    raise RuntimeError("the watchdog ended without an error")


async def settled(future: asyncio.Future[None], task: asyncio.Task[None]) -> None:
    """Wait until `task` settles `future`; raise its error, or the task's if it died first.

    Raises:
        Exception: What `future` was given, or what ended `task`.
        asyncio.InvalidStateError: `task` returned without settling `future`.
    """
    done, _ = await asyncio.wait((future, task), return_when=asyncio.FIRST_COMPLETED)
    if future not in done:
        await task
    future.result()


async def cancel(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel `tasks` (Nones skipped) and wait for them to end, whatever their outcome."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
