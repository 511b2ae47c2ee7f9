"""LocalBus: the in-process default, a SubscriptionHub with nothing in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

from protocols import Envelope, MalformedEnvelope, SchemaRegistry, check_schema
from runtime.bus import BusStats, decode_from_topic, reject
from runtime.hub import SubscriptionHub


class LocalBus:
    """An in-process bus: nothing to start, same contract as MqttBus.

    Args:
        run: Run id of every envelope on this bus.
        registry: Schemas that payloads must be instances of.
    """

    def __init__(self, run: str, registry: SchemaRegistry | None = None) -> None:
        self.run = run
        self.registry = registry or SchemaRegistry()
        self.stats = BusStats()
        self._hub = SubscriptionHub(self.stats)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._hub.close()

    async def publish(self, envelope: Envelope) -> None:
        """Hand a typed envelope to its subscribers; MalformedEnvelope if its schema is off.

        The payload was validated when it was built: only its model is checked here.
        """
        check_schema(envelope, self.registry)
        self.stats.published += 1
        self._hub.fan_out(envelope)

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        """Decode bytes as a receiver would: rejected and counted if malformed."""
        try:
            envelope = decode_from_topic(topic, payload, self.registry)
        except MalformedEnvelope as error:
            reject(self.stats, topic, error)
            return
        self.stats.published += 1
        self._hub.fan_out(envelope)

    @asynccontextmanager
    async def subscribe(self, name: str | None = None) -> AsyncIterator[AsyncIterator[Envelope]]:
        """Envelopes for `name` (addressed to it, or to all by others); all when None."""
        with self._hub.subscription(name) as drain:
            yield drain
