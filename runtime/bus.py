"""The Bus protocol: how envelopes move between the runner and agents.

Two implementations pass one conformance suite (tests/runtime/test_bus_conformance.py):
`LocalBus` (in-process, the default) and `MqttBus` (aiomqtt on a Mosquitto broker).
Both fan out what they receive through a `runtime.hub.SubscriptionHub`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, Self

import structlog

from protocols import Envelope, MalformedEnvelope, SchemaRegistry, decode

log = structlog.get_logger()

TOPIC_ROOT = "parley"


@dataclass
class BusStats:
    """Counters every bus keeps; a run summary's `messages` (a plain dataclass: the bus's
    hot path only adds to them)."""

    published: int = 0
    delivered: int = 0
    rejected: int = 0

    @classmethod
    def total(cls, parts: Sequence[BusStats]) -> BusStats:
        """The sum over several buses (a play's slots, or its agents' own connections)."""
        return cls(published=sum(p.published for p in parts),
                   delivered=sum(p.delivered for p in parts),
                   rejected=sum(p.rejected for p in parts))


def topic_for(envelope: Envelope) -> str:
    """`parley/<run>/<kind>/<sender>/<recipient>`: a broker ACL can pin each sender."""
    return f"{TOPIC_ROOT}/{envelope.run}/{envelope.kind}/{envelope.sender}/{envelope.recipient}"


def decode_from_topic(topic: str, raw: bytes, registry: SchemaRegistry) -> Envelope:
    """Decode untrusted bytes and check that the topic agrees with the envelope inside.

    A sender that lies about itself in the payload would defeat per-agent ACLs on topics.
    """
    envelope = decode(raw, registry)
    if topic != topic_for(envelope):
        raise MalformedEnvelope(f"topic {topic!r} does not match envelope {topic_for(envelope)!r}")
    return envelope


class Bus(Protocol):
    """Publishes typed envelopes and delivers each only to whom it is addressed."""

    run: str
    registry: SchemaRegistry
    stats: BusStats

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def publish(self, envelope: Envelope) -> None:
        """Send a typed envelope; MalformedEnvelope unless its payload is its schema's model.

        The payload was validated when it was built (`protocols.seal`): this only
        checks it against the run's registry (`protocols.check_schema`).
        """
        ...

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        """Send bytes as an outside client would: receivers must validate them."""
        ...

    def subscribe(
        self, name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        """Envelopes for `name` (addressed to it or to all); every envelope when None.

        The subscription is live once the context is entered.
        """
        ...


def reject(stats: BusStats, topic: str, error: Exception) -> None:
    """Count and log a malformed payload; the bus and the run go on."""
    stats.rejected += 1
    log.warning("envelope_rejected", topic=topic, error=str(error))
