"""The MQTT bus's topic filters: counted per subscription, kept in step with the broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import suppress

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from structlog.typing import FilteringBoundLogger

from protocols import BROADCAST
from runtime.bus import TOPIC_ROOT
from runtime.mqtt_address import BusConnectionError, check_level, refused


class Filters:
    """The filters that the bus's subscriptions need, each subscribed once at the broker.

    Between `resubscribe(client)` and `detach()`, new filters go to the broker at
    once; otherwise they wait for the next `resubscribe`.

    Args:
        run: Run id: every filter is under `parley/<run>/`.
        log: The bus's logger.
    """

    def __init__(self, run: str, log: FilteringBoundLogger) -> None:
        self._root = f"{TOPIC_ROOT}/{run}"
        self._client: aiomqtt.Client | None = None  # subscribed up to date on this one
        self._counts: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._log = log

    def for_name(self, name: str | None) -> list[str]:
        """Everything under the run for None; else what is addressed to `name` or to all."""
        if name is None:
            return [f"{self._root}/#"]
        check_level("subscriber name", name)
        return [f"{self._root}/+/+/{name}", f"{self._root}/+/+/{BROADCAST}"]

    async def add(self, filters: list[str]) -> None:
        """Count `filters` in, subscribing at the broker those that are new.

        Raises:
            BusConnectionError: The broker refused a filter (an ACL, say).
        """
        # One change at a time: a filter another subscription is still waiting the
        # SUBACK of must not look done to us, nor be unsubscribed under it.
        async with self._lock:
            self._counts.update(filters)
            new = [f for f in filters if self._counts[f] == 1]
            client = self._client
            if new and client is not None:
                try:
                    await _subscribe(client, new)
                except aiomqtt.MqttError as error:  # dropped meanwhile: reconnect subscribes
                    self._log.warning("mqtt_subscribe_deferred", filters=new, error=str(error))

    async def remove(self, filters: list[str]) -> None:
        """Count `filters` out, unsubscribing at the broker those no one needs any more."""
        async with self._lock:
            self._counts.subtract(filters)
            gone = [f for f in filters if self._counts[f] <= 0]
            self._counts = +self._counts
            client = self._client
            if gone and client is not None:
                with suppress(aiomqtt.MqttError):
                    await client.unsubscribe(gone)

    async def resubscribe(self, client: aiomqtt.Client) -> None:
        """Subscribe every filter in use, including those added while we wait.

        Then new filters go straight to `client`: no await comes between the last
        check and that switch, so no filter is missed.

        Makes at least one round trip, which proves that the broker accepted the
        connection: aiomqtt (2.5.1) does not wait for the CONNACK when a client is
        entered again after a lost connection, so a refused reconnection would
        otherwise look live. (The caller races this against the connection dropping,
        since aiomqtt waits up to 10 s for a reply that a dropped connection never
        brings.)

        Raises:
            aiomqtt.MqttError: The connection is not (or no longer) up.
            BusConnectionError: The broker refused a filter.
        """
        if not self._counts:  # nothing to subscribe: unsubscribing a filter never used is harmless
            await client.unsubscribe(f"{self._root}/+/+/+/+/probe")
        done: set[str] = set()
        while todo := sorted(set(self._counts) - done):
            await _subscribe(client, todo)
            done.update(todo)
        self._client = client

    def detach(self) -> None:
        """The connection is gone: new filters wait for the next `resubscribe`."""
        self._client = None


async def _subscribe(client: aiomqtt.Client, filters: list[str]) -> None:
    options = SubscribeOptions(qos=1)
    codes = await client.subscribe([(f, options) for f in filters])
    for topic, code in zip(filters, codes, strict=True):
        if refused(code):
            raise BusConnectionError(f"broker refused subscription to {topic}: {code}")
