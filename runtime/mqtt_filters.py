"""What the MQTT bus lets in, and when: topic filters kept in step with the broker, no
duplicates, and last wills held back for a grace period."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from contextlib import suppress

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from structlog.typing import FilteringBoundLogger

from protocols import BROADCAST, Control, Envelope
from runtime.bus import TOPIC_ROOT
from runtime.mqtt_address import BusConnectionError, check_level, refused

SEEN_IDS = 10_000
"""Envelope ids remembered per sender to drop QoS 1 duplicates (redelivery, resends)."""
SENDERS = 1_000
"""Senders remembered; beyond, the one heard from least recently is forgotten."""
WILL_HOLD_S = 0.5
"""How long a last will waits while our own connection holds (see HeldWills)."""
WILL_GRACE_S = 3.0
"""How long, connected, a will waits around a broker restart: more than the bus's
longest backoff (mqtt_retry.BACKOFF_S[1])."""


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


class Duplicates:
    """The envelope ids seen lately, per sender: a redelivered or resent envelope is dropped.

    Keyed by sender, whose name the topic carries and a per-agent ACL pins to its
    login (`parley broker-config`): a sender can then neither shadow another's ids
    nor, by flooding, push another's ids out of memory. Both memories are bounded.
    """

    def __init__(self, per_sender: int = SEEN_IDS, senders: int = SENDERS) -> None:
        self._seen: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self._per_sender = per_sender
        self._senders = senders

    def first(self, sender: str, envelope_id: str) -> bool:
        """True the first time `sender` is seen with `envelope_id` (then it is remembered)."""
        seen = self._seen.get(sender)
        if seen is None:
            seen = self._seen[sender] = OrderedDict()
            if len(self._seen) > self._senders:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(sender)
        if envelope_id in seen:
            return False
        seen[envelope_id] = None
        if len(seen) > self._per_sender:
            seen.popitem(last=False)
        return True


class HeldWills:
    """Last wills (Control "offline"), handed on after a while, unless their sender speaks.

    Mosquitto publishes every client's will as it shuts down, even one with an MQTT 5
    will delay, so a broker restart looks like every agent dying at once; each comes
    back, with a hello, once the broker is up. A will is therefore held `WILL_HOLD_S`,
    long enough to see our own connection drop if the broker is stopping. If it does,
    or if the will comes just after we reconnected (queued for us while we were away),
    it is held `WILL_GRACE_S` of connected time instead, for its sender to reconnect.
    Whenever its sender is heard from first, it is dropped.

    Args:
        deliver: What gets a will whose time ran out.
    """

    def __init__(self, deliver: Callable[[Envelope], None]) -> None:
        self._deliver = deliver
        self._held: dict[str, Envelope] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._connected = False
        self._lost = False  # the connection has dropped at least once
        self._reconnected_at = -math.inf

    def holds(self, envelope: Envelope) -> bool:
        """Hold `envelope` if it is a will (True); else drop any will of its sender held."""
        sender = envelope.sender
        payload = envelope.payload
        if isinstance(payload, Control) and payload.command == "offline":
            self._held[sender] = envelope
            if self._connected:
                recent = time.monotonic() - self._reconnected_at < WILL_GRACE_S
                self._start(sender, WILL_GRACE_S if recent else WILL_HOLD_S)
            return True
        if sender in self._held:  # it spoke: it is there
            self._stop(sender)
            del self._held[sender]
        return False

    def pause(self) -> None:
        """Our connection is down: every will held waits, for its long grace (`resume`)."""
        self._lost = self._lost or self._connected
        self._connected = False
        for sender in list(self._timers):
            self._stop(sender)

    def resume(self) -> None:
        """Connected: after a loss, every will held waits `WILL_GRACE_S` from now."""
        self._connected = True
        if self._lost:
            self._reconnected_at = time.monotonic()
            for sender in self._held:
                self._start(sender, WILL_GRACE_S)

    def _start(self, sender: str, delay: float) -> None:
        self._stop(sender)
        loop = asyncio.get_running_loop()
        self._timers[sender] = loop.call_later(delay, self._expire, sender)

    def _stop(self, sender: str) -> None:
        timer = self._timers.pop(sender, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, sender: str) -> None:
        self._timers.pop(sender, None)
        self._deliver(self._held.pop(sender))
