"""Fixtures for bus tests: a private Mosquitto, and a factory over every Bus kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Literal

import pytest

from protocols import Message, SchemaRegistry
from runtime.bus import Bus
from runtime.local_bus import LocalBus
from runtime.mosquitto import Mosquitto, MosquittoFactory
from runtime.mqtt_bus import MqttBus


class Note(Message):
    """A small say-kind message the bus tests send (`Note@1` in the `registry` fixture)."""

    kind: Literal["say"] = "say"
    text: str
    seq: int = 0


BusFactory = Callable[[str], Awaitable[Bus]]
"""Makes one connected party on run `run`; closed when the test ends."""


@pytest.fixture
def registry() -> SchemaRegistry:
    """The built-in schemas plus `Note@1`."""
    return SchemaRegistry({"Note@1": Note})


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One private broker for the whole session (tests isolate by run id)."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def mosquitto_factory() -> Iterator[MosquittoFactory]:
    """Start brokers with options (persistence, users, ACL, TLS); all stopped at the end."""
    factory = MosquittoFactory()
    yield factory
    factory.close()


@pytest.fixture(params=["local", pytest.param("mqtt", marks=pytest.mark.mqtt)])
async def bus_factory(
    request: pytest.FixtureRequest, registry: SchemaRegistry
) -> AsyncIterator[BusFactory]:
    """An async factory of connected buses, once per Bus implementation.

    Each call is one party of the run. With "local" every party of a run shares
    the one in-process LocalBus (that is what in-process means); with "mqtt"
    each party is its own MqttBus with its own broker connection, as separate
    processes would be.
    """
    kind: str = request.param
    url = request.getfixturevalue("mosquitto").url if kind == "mqtt" else ""
    local: dict[str, LocalBus] = {}
    async with AsyncExitStack() as stack:

        async def make(run: str) -> Bus:
            if kind == "local":
                if run not in local:
                    local[run] = await stack.enter_async_context(LocalBus(run, registry))
                return local[run]
            return await stack.enter_async_context(MqttBus(run, url, registry))

        yield make
