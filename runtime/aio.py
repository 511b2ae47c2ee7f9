"""Small asyncio helpers for the tasks of the MQTT bus: racing, cancelling cleanly, and
telling a closed socket's late registration from an error."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger()


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


def _late_socket_registration(context: dict[str, Any]) -> bool:
    """Whether `context` is aiomqtt registering a socket that closed meanwhile.

    aiomqtt hands `loop.add_reader/add_writer(fileno, ...)` to the loop with
    `call_soon_threadsafe`; when the connection drops before that call runs, the
    descriptor is closed (EBADF) or already -1 (ValueError). The connection's loss
    is handled where it is seen; this callback's failure says nothing more.
    """
    error = context.get("exception")
    message = str(context.get("message", ""))
    return (isinstance(error, OSError | ValueError)
            and ("add_writer" in message or "add_reader" in message)
            and (getattr(error, "errno", None) == errno.EBADF or "file descriptor" in str(error)))


def tolerate_closed_socket_races(loop: asyncio.AbstractEventLoop) -> None:
    """Log aiomqtt's late socket registrations as one debug line, not an asyncio traceback.

    Every other exception goes to the handler the loop had (or asyncio's default).
    Installing it twice on one loop changes nothing.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "tolerates_closed_sockets", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _late_socket_registration(context):
            log.debug("mqtt_socket_closed_before_registration", error=str(context["exception"]))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.tolerates_closed_sockets = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
