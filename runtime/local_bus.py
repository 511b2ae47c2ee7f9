"""LocalBus: the in-process default, one asyncio queue per subscription."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

from protocols import Envelope, MalformedEnvelope, SchemaRegistry, check_payload
from runtime.bus import BusStats, decode_from_topic, reject

_CLOSED = None


class LocalBus:
    """An in-process bus: nothing to start, same contract as MqttBus."""

    def __init__(self, run: str, registry: SchemaRegistry | None = None) -> None:
        self.run = run
        self.registry = registry or SchemaRegistry()
        self.stats = BusStats()
        self._subscribers: list[tuple[str | None, asyncio.Queue[Envelope | None]]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for _, queue in self._subscribers:
            queue.put_nowait(_CLOSED)

    async def publish(self, envelope: Envelope) -> None:
        check_payload(envelope, self.registry)
        self._fan_out(envelope)

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        try:
            envelope = decode_from_topic(topic, payload, self.registry)
        except MalformedEnvelope as error:
            reject(self.stats, topic, error)
            return
        self._fan_out(envelope)

    def _fan_out(self, envelope: Envelope) -> None:
        self.stats.published += 1
        for name, queue in self._subscribers:
            if name is None or envelope.is_for(name):
                queue.put_nowait(envelope)
                self.stats.delivered += 1

    @asynccontextmanager
    async def subscribe(self, name: str | None = None) -> AsyncIterator[AsyncIterator[Envelope]]:
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        entry = (name, queue)
        self._subscribers.append(entry)
        try:
            yield _drain(queue)
        finally:
            self._subscribers.remove(entry)


async def _drain(queue: asyncio.Queue[Envelope | None]) -> AsyncIterator[Envelope]:
    while (envelope := await queue.get()) is not _CLOSED:
        yield envelope
