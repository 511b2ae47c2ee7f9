"""MqttBus: the Bus contract over MQTT (aiomqtt on a Mosquitto broker).

Envelopes travel as QoS 1 publishes on `parley/<run>/<kind>/<sender>/<recipient>`.
QoS 1 is at-least-once, so each sender's envelope id is delivered at most once per bus.
The session is persistent (MQTT 5, fixed client id, session expiry), so the broker
queues our messages while we are away; we reconnect with backoff, re-subscribe and
resend whatever the broker has not acknowledged, in order.

One `aiomqtt.Client` serves every connection: it is reusable, and what it has
queued survives a disconnection, so iterating its messages again after reconnecting
loses none. A connection task enters it (`async with client:`) once per connection;
the bus's own lifecycle is an AsyncExitStack.

Who sent an envelope is the sender level of its topic (a payload that disagrees is
rejected). MQTT does not tell a subscriber who published, so only the broker can make
that level true: with one login per agent and an ACL that lets each publish only as
itself (`parley broker-config`), a `stop` from `runner` or an `offline` from an agent
(a last will is checked against the ACL too) comes from that login. The bus needs
nothing else; on an open broker anyone may speak as anyone.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal, Self

import aiomqtt
import structlog

from protocols import Envelope, MalformedEnvelope, SchemaRegistry, check_schema
from runtime.aio import cancel, settled, tolerate_closed_socket_races, unless_ended
from runtime.bus import BusStats, decode_from_topic, reject, topic_for
from runtime.hub import SubscriptionHub
from runtime.mqtt_address import (
    BrokerAddress,
    BusConnectionError,
    check_level,
    check_login,
    persistent_client,
    presence_envelope,
    tls_context,
)
from runtime.mqtt_filters import Duplicates, Filters, HeldWills
from runtime.mqtt_outbox import Outbox
from runtime.mqtt_retry import Retry
from runtime.mqtt_state import ConnectionState, check_transition

__all__ = ["ConnectionState", "MqttBus"]

log = structlog.get_logger()

CLOSE_FLUSH_S = 5.0
"""How long closing waits for the broker to acknowledge what we published."""


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
        presence: Name to announce: Control "hello" after each reconnection, once
            resubscribed, "bye" on close, and a last will "offline" the broker sends if
            this process dies (Mosquitto also as it stops: see HeldWills). The first
            hello is the host's, once subscribed: one at connect would be answered
            before anything can be received. From `runner`, hello makes hosts answer.
        max_inflight: Publishes awaiting the broker's PUBACK at once; `publish` waits
            beyond that, which also keeps the broker's queues for slow readers short.
        require_auth: Refuse to start (BusConnectionError) without a user name, so that
            a run meant for a locked-down broker never falls back to anonymous.
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
        require_auth: bool = False,
    ) -> None:
        check_level("run", run)
        self.run = run
        self.registry = registry or SchemaRegistry()
        self.stats = BusStats()
        self.address = BrokerAddress.parse(url)
        self.client_id = client_id or f"parley-{run}-{presence or 'bus'}-{uuid.uuid4().hex[:8]}"
        self._credentials = (username or self.address.username, password or self.address.password)
        self._tls = tls_context(tls, self.address.tls)
        self._presence = presence
        self._max_inflight = max_inflight
        self._require_auth = require_auth
        self._log = log.bind(run=run, client_id=self.client_id, broker=str(self.address))
        self._state = ConnectionState.CLOSED
        self._hub = SubscriptionHub(self.stats)
        self._outbox = Outbox(max_inflight, self._log)
        self._filters = Filters(run, self._log)
        self._duplicates = Duplicates()
        self._wills = HeldWills(self._hub.fan_out)
        self._stack: AsyncExitStack | None = None

    @property
    def state(self) -> ConnectionState:
        """Where the bus stands with its broker."""
        return self._state

    def _enter(self, state: ConnectionState) -> None:
        check_transition(self._state, state)
        self._state = state

    # --- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Connect (BusConnectionError if the broker is unreachable or refuses us)."""
        if self._stack is not None or self._hub.closed:
            raise RuntimeError("an MqttBus is entered once")
        check_login(self.address, self._credentials[0], tls=self._tls is not None,
                    required=self._require_auth)
        tolerate_closed_socket_races(asyncio.get_running_loop())
        will = None
        if self._presence is not None:
            will = presence_envelope(self.run, self._presence, "offline", "connection lost")
        client = persistent_client(
            self.address, self.client_id, credentials=self._credentials, tls=self._tls,
            will=will, max_inflight=self._max_inflight,
        )  # fmt: skip
        connected = asyncio.get_running_loop().create_future()
        async with AsyncExitStack() as stack:
            # Unwound in reverse: CLOSED first (so the connection task does not take
            # its cancellation for a lost connection), then the task, then the calls.
            stack.push_async_callback(self._outbox.aclose)
            connection = asyncio.create_task(self._connection(client, connected))
            stack.push_async_callback(cancel, connection)  # `async with client` exits cleanly
            self._enter(ConnectionState.CONNECTING)
            stack.callback(self._enter, ConnectionState.CLOSED)
            await settled(connected, connection)
            self._stack = stack.pop_all()
        self._log.info("mqtt_connected")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Say bye, give the broker a moment to acknowledge, disconnect, end every drain."""
        stack, self._stack = self._stack, None
        if stack is None:  # never opened, or closed already
            return
        try:
            async with stack:
                await self._announce("bye")
                if not await self._outbox.wait_acked(CLOSE_FLUSH_S):
                    self._log.warning("mqtt_unsent", count=len(self._outbox))
        finally:
            self._wills.pause()
            self._hub.close()

    async def _connection(self, client: aiomqtt.Client, connected: asyncio.Future[None]) -> None:
        """Connect, serve, and after a loss reconnect with backoff (`Retry`), until
        cancelled. A first connection that fails for good goes to `connected` (and ends
        the task)."""
        loop = asyncio.get_running_loop()
        retry = Retry(loop.time())
        while True:
            try:
                async with client:
                    await self._serve(client, connected, retry.attempts + 1)
            except (aiomqtt.MqttError, BusConnectionError) as error:
                if not connected.done() and retry.first_connection_ends(error, loop.time()):
                    message = f"cannot connect to {self.address}: {error}"
                    connected.set_exception(BusConnectionError(message))
                    return
                if self._state is ConnectionState.CLOSED:  # closing: not a lost connection
                    return
                if self._state is ConnectionState.CONNECTING:
                    attempt = retry.failed_again()
                    self._log.debug("mqtt_reconnect_failed", attempt=attempt, error=str(error))
                else:
                    self._lost(error)
                    retry.reset()
            await asyncio.sleep(retry.delay)

    async def _serve(
        self, client: aiomqtt.Client, connected: asyncio.Future[None], attempt: int
    ) -> None:
        """One connection: subscribe, announce, flush, and dispatch until it drops.

        The receiver dispatches from the start and is also the connection's watchdog:
        an aiomqtt call awaits its reply for up to 10 s even when the connection
        drops under it, so the round trips of `resubscribe` race the receiver.
        """
        receiver = asyncio.create_task(self._receive(client))
        flusher: asyncio.Task[None] | None = None
        try:
            await unless_ended(receiver, self._filters.resubscribe(client))
            self._enter(ConnectionState.CONNECTED)
            self._wills.resume()
            if connected.done():
                self._log.info("mqtt_reconnected", attempts=attempt)
                await self._announce("hello", "reconnected")
            else:
                connected.set_result(None)
            flusher = asyncio.create_task(self._flush(client))
            await receiver  # until the connection drops: MqttError
        finally:
            self._filters.detach()
            await cancel(receiver, flusher)

    async def _receive(self, client: aiomqtt.Client) -> None:
        # Straight from the client's queue to the subscriptions: no task per message.
        async for message in client.messages:
            self._dispatch(message)

    async def _flush(self, client: aiomqtt.Client) -> None:
        await self._outbox.flush(client)
        if self._state is ConnectionState.CONNECTED:  # not closed while the last call went out
            self._enter(ConnectionState.READY)

    def _lost(self, error: Exception) -> None:
        self._enter(ConnectionState.CONNECTING)
        self._wills.pause()
        unacked = self._outbox.requeue()
        self._log.warning("mqtt_disconnected", error=str(error), unacked=unacked)

    # --- publishing ------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Check the payload's model (MalformedEnvelope if wrong), then send it with QoS 1.

        Returns once the envelope is handed to the client, or buffered while the
        broker is unreachable; waits first while `max_inflight` publishes are unacked.
        """
        check_schema(envelope, self.registry)
        await self._hand_over(topic_for(envelope), envelope.to_json())

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        """Send bytes unchecked, as an outside client would; receivers validate them."""
        await self._hand_over(topic, payload)

    async def _hand_over(self, topic: str, payload: bytes) -> None:
        self._require_open()
        await self._outbox.put(topic, payload)
        self.stats.published += 1

    def _require_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            raise RuntimeError("MqttBus is not connected: use `async with bus:`")

    async def _announce(self, command: Literal["hello", "bye"], detail: str = "") -> None:
        if self._presence is not None:
            envelope = presence_envelope(self.run, self._presence, command, detail)
            await self._hand_over(topic_for(envelope), envelope.to_json())

    # --- subscribing and receiving ---------------------------------------------

    @asynccontextmanager
    async def subscribe(self, name: str | None = None) -> AsyncIterator[AsyncIterator[Envelope]]:
        """Envelopes for `name` (addressed to it, or to all by others); all when None.

        The broker has acknowledged the subscription when the context is entered
        (unless the connection is down: then the reconnection subscribes).
        """
        self._require_open()
        filters = self._filters.for_name(name)
        with self._hub.subscription(name) as drain:
            try:
                await self._filters.add(filters)
                yield drain
            finally:
                await self._filters.remove(filters)

    def _dispatch(self, message: aiomqtt.Message) -> None:
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
        if self._duplicates.first(envelope.sender, envelope.id) and not self._wills.holds(envelope):
            self._hub.fan_out(envelope)
