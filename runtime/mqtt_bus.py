"""MqttBus: the Bus contract over MQTT (aiomqtt on a Mosquitto broker).

Envelopes travel as QoS 1 publishes on `parley/<run>/<kind>/<sender>/<recipient>`.
QoS 1 is at-least-once, so every envelope id is delivered at most once per bus.
The session is persistent (MQTT 5, fixed client id, session expiry), so the broker
queues our messages while we are away; we reconnect with backoff, re-subscribe and
resend whatever the broker has not acknowledged, in order.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import sys
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Literal, Self

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocols import (
    BROADCAST,
    Control,
    Envelope,
    MalformedEnvelope,
    SchemaRegistry,
    check_payload,
)
from runtime.bus import TOPIC_ROOT, BusStats, decode_from_topic, reject, topic_for
from runtime.mqtt_address import (
    BrokerAddress,
    BusConnectionError,
)
from runtime.mqtt_address import (
    check_level as _check_level,
)
from runtime.mqtt_address import (
    refused as _refused,
)
from runtime.mqtt_address import (
    tls_context as _tls_context,
)

log = structlog.get_logger()

SESSION_EXPIRY_S = 600
"""How long the broker keeps our session (subscriptions, queued QoS 1) while we are away."""
BACKOFF_S = (0.05, 2.0)
"""First and longest wait between reconnection attempts."""
CLOSE_FLUSH_S = 5.0
"""How long closing waits for the broker to acknowledge what we published."""
SEEN_IDS = 10_000
"""Envelope ids remembered to drop QoS 1 duplicates (redelivery, overlapping filters)."""


@dataclass(eq=False)
class _Subscription:
    name: str | None
    queue: asyncio.Queue[Envelope | None]


def _inbox_type(sink: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A client "queue" that hands each message straight to `sink`.

    Why: paho acknowledges a QoS 1 message as soon as it is read, and aiomqtt's
    iterator stops on disconnection even when its queue still holds messages, so
    those would be lost across a reconnect; dispatching at once loses nothing and
    costs no task per message.
    """

    class Inbox(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            sink(item)

    return Inbox


class MqttBus:
    """A bus on an MQTT broker: same contract as LocalBus, across processes and hosts.

    Args:
        run: Run id; the bus only sees topics under `parley/<run>/`.
        url: `mqtt://host:port`, `mqtts://host:port` (TLS) or `mqtt://user:pass@host:port`.
        registry: Schemas that payloads are validated against.
        client_id: MQTT client id; a fresh unique one by default.
        username: Overrides the URL's user name.
        password: Overrides the URL's password.
        tls: An SSLContext, True for the default context, False for none; by default
            TLS exactly when the URL is `mqtts://`.
        presence: Agent name to announce: Control "hello" on connect, "bye" on close,
            and a last will Control "offline" the broker sends if this process dies.
        max_inflight: Publishes awaiting the broker's PUBACK at once; `publish` waits
            beyond that, which also keeps the broker's queues for slow readers short.
    """

    def __init__(
        self,
        run: str,
        url: str = "mqtt://127.0.0.1:1883",
        registry: SchemaRegistry | None = None,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        presence: str | None = None,
        max_inflight: int = 16,
    ) -> None:
        _check_level("run", run)
        self.run = run
        self.registry = registry or SchemaRegistry()
        self.stats = BusStats()
        self.address = BrokerAddress.parse(url)
        self.client_id = client_id or f"parley-{run}-{presence or 'bus'}-{uuid.uuid4().hex[:8]}"
        self._username = username or self.address.username
        self._password = password or self.address.password
        self._tls = _tls_context(tls, self.address.tls)
        self._presence = presence
        self._max_inflight = max_inflight
        self._log = log.bind(run=run, client_id=self.client_id, broker=str(self.address))
        self._client: aiomqtt.Client | None = None
        self._inbox = _inbox_type(self._on_message)
        self._subscriptions: list[_Subscription] = []
        self._filters: Counter[str] = Counter()
        self._filters_lock = asyncio.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seq = 0
        self._unacked: dict[int, tuple[str, bytes]] = {}
        self._outbox: deque[int] = deque()
        self._confirming: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()
        self._live = False  # connected and subscribed: new filters go to the broker now
        self._ready = False  # live and the outbox flushed: publishes go out directly
        self._open = False  # between a successful connect and the end of closing
        self._supervisor: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._client = await self._connect()
        await self._resubscribe()
        self._supervisor = asyncio.create_task(self._supervise(self._client))
        self._announce("hello")
        self._flusher = asyncio.create_task(self._flush())
        await self._flusher
        self._open = True
        self._log.info("mqtt_connected")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._open:
            self._announce("bye")
        await self._wait_acked(CLOSE_FLUSH_S)
        for task in (self._supervisor, self._flusher, *self._confirming):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._live = self._ready = self._open = False
        if self._unacked:
            self._log.warning("mqtt_unsent", count=len(self._unacked))
        await self._drop_client()
        for subscription in self._subscriptions:
            subscription.queue.put_nowait(None)

    async def _connect(self) -> aiomqtt.Client:
        """One connection to the broker, resuming our session if it holds one.

        Never clean_start: Mosquitto (2.0) does not save the session of a client
        that is connected with clean_start when it stops, so a restart would lose
        what it queued for us. A fresh client id has no old session anyway; an old
        session of a reused id only yields messages no subscription of ours matches.
        """
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self._username,
            password=self._password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            will=self._will(),
            tls_context=self._tls,
            queue_type=self._inbox,
            max_inflight_messages=self._max_inflight,
        )
        client.pending_calls_threshold = sys.maxsize  # our own window bounds them
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as error:
            raise BusConnectionError(f"cannot connect to {self.address}: {error}") from None
        return client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def _supervise(self, client: aiomqtt.Client) -> None:
        """Wait for the connection to drop, then reconnect until it is back."""
        while True:
            try:
                async for _ in client.messages:  # messages go to _on_message, never here
                    pass
            except aiomqtt.MqttError as error:
                self._on_lost(error)
            client = await self._reconnect()

    def _on_lost(self, error: Exception) -> None:
        self._live = self._ready = False
        for task in (self._flusher, *self._confirming):
            if task is not None:
                task.cancel()
        self._confirming.clear()
        # Resend everything unacknowledged, oldest first: some may arrive twice,
        # and receivers drop duplicate ids.
        self._outbox = deque(self._unacked)
        self._progress.set()
        self._log.warning("mqtt_disconnected", error=str(error), unacked=len(self._unacked))

    async def _reconnect(self) -> aiomqtt.Client:
        delay, longest = BACKOFF_S
        attempt = 0
        await self._drop_client()
        while True:
            attempt += 1
            await asyncio.sleep(delay)
            try:
                self._client = await self._connect()
                await self._resubscribe()
            except (BusConnectionError, aiomqtt.MqttError) as error:
                self._log.debug("mqtt_reconnect_failed", attempt=attempt, error=str(error))
                await self._drop_client()
                delay = min(delay * 2, longest)
                continue
            self._log.info("mqtt_reconnected", attempts=attempt)
            self._announce("hello", "reconnected")
            self._flusher = asyncio.create_task(self._flush())
            return self._client

    # --- publishing ------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Validate the payload (MalformedEnvelope if invalid), then send it with QoS 1.

        Returns once the envelope is handed to the client, or buffered while the
        broker is unreachable; waits first while `max_inflight` publishes are unacked.
        """
        check_payload(envelope, self.registry)
        await self._wait_room()
        self._enqueue(topic_for(envelope), envelope.to_json())

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        """Send bytes unchecked, as an outside client would; receivers validate them."""
        await self._wait_room()
        self._enqueue(topic, payload)

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("MqttBus is not connected: use `async with bus:`")

    async def _wait_room(self) -> None:
        self._require_open()
        while self._ready and len(self._confirming) >= self._max_inflight:
            self._progress.clear()
            await self._progress.wait()

    def _enqueue(self, topic: str, payload: bytes) -> None:
        self._seq += 1
        self._unacked[self._seq] = (topic, payload)
        self.stats.published += 1
        if self._ready:
            self._send(self._seq)
        else:
            self._outbox.append(self._seq)

    def _send(self, seq: int) -> None:
        assert self._client is not None
        task = asyncio.create_task(self._confirm(self._client, seq))
        self._confirming.add(task)

    async def _confirm(self, client: aiomqtt.Client, seq: int) -> None:
        """Publish one message and forget it once the broker has acknowledged it."""
        topic, payload = self._unacked[seq]
        try:
            await client.publish(topic, payload, qos=1, timeout=math.inf)
        except aiomqtt.MqttError as error:
            # Stays unacked: resent after the reconnection that this error precedes.
            self._log.debug("mqtt_publish_failed", topic=topic, error=str(error))
        else:
            self._unacked.pop(seq, None)
        finally:
            self._confirming.discard(asyncio.current_task())
            self._progress.set()

    async def _flush(self) -> None:
        """Send what was buffered while disconnected, in order, then go direct."""
        while self._outbox:
            if len(self._confirming) >= self._max_inflight:
                self._progress.clear()
                await self._progress.wait()
                continue
            self._send(self._outbox.popleft())
        self._ready = True
        self._progress.set()

    async def _wait_acked(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._unacked and loop.time() < deadline:
            self._progress.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())

    def _presence_envelope(
        self, command: Literal["hello", "bye", "offline"], detail: str
    ) -> Envelope:
        assert self._presence is not None
        return Envelope(
            run=self.run,
            episode=0,
            step=0,
            sender=self._presence,
            recipient=BROADCAST,
            kind="control",
            schema="Control@1",
            payload=Control(command=command, detail=detail).model_dump(mode="json"),
        )

    def _announce(self, command: Literal["hello", "bye"], detail: str = "") -> None:
        if self._presence is not None:
            envelope = self._presence_envelope(command, detail)
            self._enqueue(topic_for(envelope), envelope.to_json())

    def _will(self) -> aiomqtt.Will | None:
        if self._presence is None:
            return None
        envelope = self._presence_envelope("offline", "connection lost")
        return aiomqtt.Will(topic_for(envelope), envelope.to_json(), qos=1)

    # --- subscribing -----------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, name: str | None = None) -> AsyncIterator[AsyncIterator[Envelope]]:
        """Envelopes for `name` (addressed to it, or to all by others); all when None.

        The broker has acknowledged the subscription when the context is entered.
        """
        self._require_open()
        filters = self._filters_for(name)
        subscription = _Subscription(name, asyncio.Queue())
        self._subscriptions.append(subscription)
        try:
            await self._add_filters(filters)
            yield _drain(subscription.queue)
        finally:
            self._subscriptions.remove(subscription)
            await self._remove_filters(filters)

    def _filters_for(self, name: str | None) -> list[str]:
        if name is not None:
            _check_level("subscriber name", name)
        root = f"{TOPIC_ROOT}/{self.run}"
        return [f"{root}/#"] if name is None else [f"{root}/+/+/{name}", f"{root}/+/+/{BROADCAST}"]

    async def _add_filters(self, filters: list[str]) -> None:
        # One change at a time: a filter another subscription is still waiting the
        # SUBACK of must not look done to us, nor be unsubscribed under it.
        async with self._filters_lock:
            self._filters.update(filters)
            new = [f for f in filters if self._filters[f] == 1]
            if new and self._live:
                try:
                    await self._subscribe_broker(new)
                except aiomqtt.MqttError as error:  # dropped meanwhile: reconnect subscribes
                    self._log.warning("mqtt_subscribe_deferred", filters=new, error=str(error))

    async def _remove_filters(self, filters: list[str]) -> None:
        async with self._filters_lock:
            self._filters.subtract(filters)
            gone = [f for f in filters if self._filters[f] <= 0]
            self._filters = +self._filters
            if gone and self._live and self._client is not None:
                with suppress(aiomqtt.MqttError):
                    await self._client.unsubscribe(gone)

    async def _subscribe_broker(self, filters: list[str]) -> None:
        assert self._client is not None
        options = SubscribeOptions(qos=1)
        codes = await self._client.subscribe([(f, options) for f in filters])
        for topic, code in zip(filters, codes, strict=True):
            if _refused(code):
                raise BusConnectionError(f"broker refused subscription to {topic}: {code}")

    async def _resubscribe(self) -> None:
        """Subscribe every filter in use, including those added while we wait."""
        done: set[str] = set()
        while todo := sorted(set(self._filters) - done):
            await self._subscribe_broker(todo)
            done.update(todo)
        self._live = True

    # --- receiving -------------------------------------------------------------

    def _on_message(self, message: aiomqtt.Message) -> None:
        """Validate, drop duplicates, hand to every matching subscription. Never raises."""
        topic = message.topic.value
        try:
            envelope = decode_from_topic(topic, message.payload, self.registry)
        except MalformedEnvelope as error:
            reject(self.stats, topic, error)
            return
        except Exception as error:  # a bug here must not take the connection down
            self._log.exception("mqtt_dispatch_failed", topic=topic, error=str(error))
            return
        if envelope.id in self._seen:
            return
        self._seen[envelope.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        for subscription in self._subscriptions:
            if subscription.name is None or envelope.is_for(subscription.name):
                subscription.queue.put_nowait(envelope)
                self.stats.delivered += 1


async def _drain(queue: asyncio.Queue[Envelope | None]) -> AsyncIterator[Envelope]:
    while (envelope := await queue.get()) is not None:
        yield envelope
