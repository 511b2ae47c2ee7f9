"""SubscriptionHub: the fan-out every bus shares, from envelopes to per-subscription queues.

A bus decides what reaches it (LocalBus: whatever is published in-process; MqttBus:
what the broker delivers and passes validation); the hub decides who gets it. Each
subscription has its own unbounded queue, so a slow reader never holds up the others
nor the bus, and `close` ends every drain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Self

from protocols import Envelope
from runtime.bus import BusStats


class Drain(AsyncIterator[Envelope]):
    """The envelopes of one subscription, in arrival order, until the hub closes.

    Args:
        name: Agent the subscription is for, or None for every envelope.
    """

    __slots__ = ("_ended", "_queue", "name")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._ended = False

    def put(self, envelope: Envelope) -> None:
        """Queue `envelope` for the reader; never blocks (the queue is unbounded)."""
        self._queue.put_nowait(envelope)

    def end(self) -> None:
        """Let the reader finish what is queued, then stop."""
        self._queue.put_nowait(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Envelope:
        # Once ended, stay ended: a second `async for` must not wait forever.
        if self._ended:
            raise StopAsyncIteration
        envelope = await self._queue.get()
        if envelope is None:
            self._ended = True
            raise StopAsyncIteration
        return envelope


class SubscriptionHub:
    """Registers subscriptions and hands each envelope to every one that wants it.

    Args:
        stats: The bus's counters; the hub counts `delivered` (one per subscription
            an envelope is handed to). Counting `published` stays with the bus.
    """

    def __init__(self, stats: BusStats) -> None:
        self._stats = stats
        self._drains: list[Drain] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    @contextmanager
    def subscription(self, name: str | None) -> Iterator[Drain]:
        """A drain of envelopes for `name` (all when None), registered for the block.

        Registered on entry, so nothing fanned out after that is missed. On a
        closed hub the drain ends at once rather than waiting forever.
        """
        drain = Drain(name)
        if self._closed:
            drain.end()
        self._drains.append(drain)
        try:
            yield drain
        finally:
            self._drains.remove(drain)

    def fan_out(self, envelope: Envelope) -> None:
        """Queue `envelope` for every subscription that wants it. Never blocks."""
        delivered = 0
        for drain in self._drains:  # the hot path of every bus: kept to plain tests
            name = drain.name
            if name is None or envelope.is_for(name):
                drain.put(envelope)
                delivered += 1
        self._stats.delivered += delivered

    def close(self) -> None:
        """End every drain (each still yields what was queued before). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for drain in self._drains:
            drain.end()
