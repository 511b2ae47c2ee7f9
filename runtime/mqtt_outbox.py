"""The MQTT bus's outbox: QoS 1 publishes, kept in order until the broker acknowledges them."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import suppress
from time import monotonic

import aiomqtt
from structlog.typing import FilteringBoundLogger

RESEND_S = 2.0
"""How long an acknowledged publish is kept, to be sent again after a lost connection."""
RESEND_MAX = 1_000
"""At most this many of them (well under what receivers remember to drop duplicates)."""


class Outbox:
    """Publishes in order, at most a window of them unacknowledged, none lost on reconnect.

    Every publish is kept under a sequence number until its PUBACK. While no
    connection is ready, publishes wait in a buffer; `flush(client)` sends the
    buffer in order and then sends directly on that client, until `requeue()`
    (the connection is lost) buffers every unacknowledged publish again, oldest first.

    A PUBACK does not mean delivered: a broker that crashes (SIGKILL, power) loses what
    it acknowledged but had neither sent on nor saved. So publishes acknowledged in the
    last `RESEND_S` are sent again after a lost connection too; receivers drop the
    duplicate ids, and only the envelope the crash lost goes through.

    The window is an `asyncio.Semaphore`: each publish call holds one permit until
    it ends (acknowledged, failed or cancelled), so `put` waits while the broker
    is `max_inflight` PUBACKs behind, which also keeps its queues for slow readers short.

    Args:
        max_inflight: Publish calls awaiting a PUBACK at once.
        log: The bus's logger.
    """

    def __init__(self, max_inflight: int, log: FilteringBoundLogger) -> None:
        self._window = asyncio.Semaphore(max_inflight)
        self._unacked: dict[int, tuple[str, bytes]] = {}
        self._recent: deque[tuple[float, str, bytes]] = deque(maxlen=RESEND_MAX)  # acked
        self._buffer: deque[int] = deque()
        self._calls: set[asyncio.Task[None]] = set()
        self._client: aiomqtt.Client | None = None  # set exactly while sending directly
        self._seq = 0
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self._log = log

    def __len__(self) -> int:
        """Publishes the broker has not acknowledged yet (sent or buffered)."""
        return len(self._unacked)

    async def put(self, topic: str, payload: bytes) -> None:
        """Send within the window, or buffer while no connection is ready.

        Waits only for room in the window, and only while sending directly: while
        the broker is away the buffer grows, as the broker's own queue would.
        """
        if self._client is not None:
            await self._window.acquire()
            if self._client is not None:  # still connected after the wait
                self._call(self._client, self._keep(topic, payload))
                return
            self._window.release()
        self._buffer.append(self._keep(topic, payload))

    async def flush(self, client: aiomqtt.Client) -> None:
        """Send the buffer in order within the window, then send directly on `client`.

        Publishes made meanwhile join the end of the buffer, so order holds.
        """
        while self._buffer:
            await self._window.acquire()
            self._call(client, self._buffer.popleft())
        self._client = client

    def requeue(self) -> int:
        """The connection is lost: buffer every unacknowledged publish again, oldest first.

        Publish calls in flight are cancelled (their permits come back), and
        everything is resent after the reconnection, after what was acknowledged in the
        last `RESEND_S`. paho also retransmits what it still held, so some envelopes
        arrive twice: receivers drop duplicate ids.

        Returns:
            How many publishes are unacknowledged.
        """
        self._client = None
        for call in self._calls:
            call.cancel()
        unacked = list(self._unacked)  # oldest first
        since = monotonic() - RESEND_S
        again = [self._keep(topic, payload) for acked_at, topic, payload in self._recent
                 if acked_at >= since]
        self._recent.clear()
        self._buffer = deque(again + unacked)
        return len(unacked)

    async def wait_acked(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the broker to acknowledge everything; True if it did."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._all_acked.wait(), timeout)
        return not self._unacked

    async def aclose(self) -> None:
        """Stop sending: cancel the publish calls still in flight and wait for them to end."""
        self._client = None
        calls = list(self._calls)
        for call in calls:
            call.cancel()
        if calls:
            await asyncio.wait(calls)

    def _keep(self, topic: str, payload: bytes) -> int:
        self._seq += 1
        self._unacked[self._seq] = (topic, payload)
        self._all_acked.clear()
        return self._seq

    def _call(self, client: aiomqtt.Client, seq: int) -> None:
        """Publish `seq` in its own task, which holds one permit of the window until it ends."""
        call = asyncio.create_task(self._publish(client, seq))
        self._calls.add(call)
        # A done callback, not a `finally`: a task cancelled before it first runs
        # never enters its coroutine, and its permit must come back all the same.
        call.add_done_callback(self._ended)

    def _ended(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        self._window.release()

    async def _publish(self, client: aiomqtt.Client, seq: int) -> None:
        topic, payload = self._unacked[seq]  # kept until acknowledged: a KeyError is a bug
        try:
            await client.publish(topic, payload, qos=1, timeout=math.inf)
        except aiomqtt.MqttError as error:
            # Stays unacknowledged: resent after the reconnection this error precedes.
            self._log.debug("mqtt_publish_failed", topic=topic, error=str(error))
            return
        self._unacked.pop(seq, None)
        self._recent.append((monotonic(), topic, payload))
        if not self._unacked:
            self._all_acked.set()
