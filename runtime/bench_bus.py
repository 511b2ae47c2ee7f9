"""Bus benchmark: each bus against the bare mechanism it is built on.

Pairs, measured in one process and alternated over a few repeats:
  local  vs  queue:   LocalBus, against a bare asyncio.Queue. Both get the same typed
                      envelopes (payloads built and validated before timing, as agents
                      build them) and both run `check_schema` on each (the payload is
                      an instance of the registry's model: the whole per-envelope check
                      a bus owes now that payloads are typed). The baseline then puts
                      the envelope on one queue and the consumer gets it; LocalBus also
                      counts it, fans it out through its SubscriptionHub (an `is_for`
                      test per subscription) and hands it over through a Drain.
  mqtt   vs  aiomqtt: MqttBus, against a bare aiomqtt publish/subscribe loop on the
                      same broker (QoS 1, the same window of unacknowledged publishes,
                      a task per publish, one publisher client and one subscriber
                      client reading `client.messages`). The baseline sends bytes
                      encoded before timing, and its consumer iterates
                      `client.messages` itself without decoding. MqttBus runs
                      `check_schema` and encodes each envelope on publish; on receipt
                      its connection task iterates `client.messages`, decodes, checks
                      the topic, drops duplicate ids and fans out to the consumer's
                      queue (one more task switch per message). The ratio charges all
                      of that to MqttBus.

Each trial: one producer publishes N small say envelopes, yielding to the event loop
after each (as agents do), one consumer receives them. Throughput is N over the time
from the first publish to the last receipt; latency is receipt time minus send time.
`parley bench bus [--bus URL] [--json]` calls `bench_bus` and `render_bench`.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field

from protocols import Envelope, Message, SchemaRegistry, check_schema, seal
from runtime.bus import topic_for
from runtime.local_bus import LocalBus
from runtime.mqtt_address import BrokerAddress
from runtime.mqtt_bus import MqttBus

TARGETS = {"local/queue": 0.5, "mqtt/aiomqtt": 0.8}
"""Least acceptable throughput of each bus relative to its bare baseline."""
WINDOW = 16
"""Unacknowledged QoS 1 publishes in flight, for MqttBus and its baseline alike."""
RECEIVE_TIMEOUT_S = 30.0

Trial = Callable[[list[Envelope]], Awaitable[tuple[list[float], list[float]]]]
"""Sends the envelopes; returns (send times, receive times), both in send order."""


class BenchSay(Message):
    """A small say message, the bus's most common traffic."""

    kind: Literal["say"] = "say"
    text: str
    seq: int


class BenchRow(BaseModel):
    """One bus (or baseline): throughput and latency over the repeats."""

    model_config = ConfigDict(frozen=True)

    name: str
    throughput: float = Field(description="Median over repeats, messages per second.")
    best_throughput: float = Field(description="Best repeat, messages per second.")
    p50_ms: float = Field(description="Median over repeats of each repeat's median latency.")
    p99_ms: float = Field(description="Median over repeats of each repeat's 99th percentile.")


class BenchResult(BaseModel):
    """Everything `parley bench bus` reports; JSON with `model_dump_json()`."""

    model_config = ConfigDict(frozen=True)

    messages: int
    repeats: int
    url: str | None
    rows: list[BenchRow]
    ratios: dict[str, float] = Field(description="Median throughput, bus over its baseline.")
    targets: dict[str, float] = Field(default_factory=lambda: dict(TARGETS))

    def row(self, name: str) -> BenchRow:
        return next(row for row in self.rows if row.name == name)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what `--json` prints)."""
        return self.model_dump(mode="json")


REGISTRY = SchemaRegistry({"BenchSay@1": BenchSay})


def _envelopes(run: str, n: int) -> list[Envelope]:
    def say(i: int) -> Envelope:
        message = BenchSay(text="go to the red landmark", seq=i)
        return seal(message, run=run, episode=0, step=i, sender="a", recipient="b",
                    schema_id="BenchSay@1")  # fmt: skip

    return [say(i) for i in range(n)]


async def _collect(stream: Callable[[], Awaitable[object]], n: int) -> list[float]:
    received: list[float] = []
    for _ in range(n):
        await stream()
        received.append(time.perf_counter())
    return received


async def _local(envelopes: list[Envelope]) -> tuple[list[float], list[float]]:
    sent: list[float] = []
    async with LocalBus(envelopes[0].run, REGISTRY) as bus, bus.subscribe("b") as inbox:
        consumer = asyncio.create_task(_collect(inbox.__anext__, len(envelopes)))
        for envelope in envelopes:
            sent.append(time.perf_counter())
            await bus.publish(envelope)
            await asyncio.sleep(0)
        return sent, await asyncio.wait_for(consumer, RECEIVE_TIMEOUT_S)


async def _queue(envelopes: list[Envelope]) -> tuple[list[float], list[float]]:
    sent: list[float] = []
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    consumer = asyncio.create_task(_collect(queue.get, len(envelopes)))
    for envelope in envelopes:
        sent.append(time.perf_counter())
        check_schema(envelope, REGISTRY)
        queue.put_nowait(envelope)
        await asyncio.sleep(0)
    return sent, await asyncio.wait_for(consumer, RECEIVE_TIMEOUT_S)


def _mqtt(url: str) -> Trial:
    async def trial(envelopes: list[Envelope]) -> tuple[list[float], list[float]]:
        sent: list[float] = []
        run = envelopes[0].run
        async with (
            MqttBus(run, url, REGISTRY, max_inflight=WINDOW) as producer,
            MqttBus(run, url, REGISTRY, max_inflight=WINDOW) as consumer_bus,
            consumer_bus.subscribe("b") as inbox,
        ):
            consumer = asyncio.create_task(_collect(inbox.__anext__, len(envelopes)))
            for envelope in envelopes:
                sent.append(time.perf_counter())
                await producer.publish(envelope)
                await asyncio.sleep(0)
            return sent, await asyncio.wait_for(consumer, RECEIVE_TIMEOUT_S)

    return trial


def _aiomqtt(url: str) -> Trial:
    address = BrokerAddress.parse(url)

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(
            address.host, address.port, username=address.username, password=address.password,
            protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=WINDOW,
        )  # fmt: skip

    async def trial(envelopes: list[Envelope]) -> tuple[list[float], list[float]]:
        sent: list[float] = []
        topic = topic_for(envelopes[0])
        payloads = [envelope.to_json() for envelope in envelopes]
        window = asyncio.Semaphore(WINDOW)
        in_flight: set[asyncio.Task[None]] = set()

        async def publish(publisher: aiomqtt.Client, payload: bytes) -> None:
            try:
                await publisher.publish(topic, payload, qos=1, timeout=math.inf)
            finally:
                window.release()

        async with client() as publisher, client() as subscriber:
            publisher.pending_calls_threshold = WINDOW  # no warning per publish beyond 10
            await subscriber.subscribe(topic, qos=1)
            messages = aiter(subscriber.messages)
            consumer = asyncio.create_task(_collect(messages.__anext__, len(payloads)))
            for payload in payloads:
                await window.acquire()
                sent.append(time.perf_counter())
                task = asyncio.create_task(publish(publisher, payload))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await asyncio.sleep(0)
            received = await asyncio.wait_for(consumer, RECEIVE_TIMEOUT_S)
            await asyncio.gather(*in_flight)
            return sent, received

    return trial


def _summary(name: str, n: int, trials: list[tuple[list[float], list[float]]]) -> BenchRow:
    throughputs = [n / (received[-1] - sent[0]) for sent, received in trials]
    p50s, p99s = [], []
    for sent, received in trials:
        latencies = sorted(1000 * (r - s) for s, r in zip(sent, received, strict=True))
        p50s.append(latencies[len(latencies) // 2])
        p99s.append(latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)])
    return BenchRow(
        name=name,
        throughput=statistics.median(throughputs),
        best_throughput=max(throughputs),
        p50_ms=statistics.median(p50s),
        p99_ms=statistics.median(p99s),
    )


async def _pair(
    names: tuple[str, str], trials: tuple[Trial, Trial], messages: int, repeats: int
) -> list[BenchRow]:
    """Alternate the two (who goes first swaps each repeat) after a short warm-up."""
    results: tuple[list[tuple[list[float], list[float]]], ...] = ([], [])
    for index in (0, 1):
        await trials[index](_envelopes(f"bench-{uuid.uuid4().hex[:8]}", min(messages, 200)))
    for repeat in range(repeats):
        order = (0, 1) if repeat % 2 == 0 else (1, 0)
        for index in order:
            gc.collect()
            envelopes = _envelopes(f"bench-{uuid.uuid4().hex[:8]}", messages)
            results[index].append(await trials[index](envelopes))
    return [_summary(names[i], messages, results[i]) for i in (0, 1)]


async def bench_bus(url: str | None, messages: int = 5000, repeats: int = 3) -> BenchResult:
    """Measure LocalBus (and MqttBus on the broker at `url`, when given) against baselines.

    Args:
        url: Broker for the MQTT pair, e.g. `mqtt://127.0.0.1:1883`; None (or
            "memory") measures the in-process pair only.
        messages: Envelopes per trial.
        repeats: Trials per bus; rows report the median (and the best throughput).
    """
    if url == "memory":
        url = None
    rows = await _pair(("local", "queue"), (_local, _queue), messages, repeats)
    if url is not None:
        rows += await _pair(("mqtt", "aiomqtt"), (_mqtt(url), _aiomqtt(url)), messages, repeats)
    by_name = {row.name: row.throughput for row in rows}
    ratios = {
        key: by_name[bus] / by_name[base]
        for key in TARGETS
        for bus, base in [key.split("/")]
        if bus in by_name
    }
    return BenchResult(
        messages=messages,
        repeats=repeats,
        url=str(BrokerAddress.parse(url)) if url else None,
        rows=rows,
        ratios=ratios,
    )


def render_bench(result: BenchResult) -> str:
    """A small text table of the rows, then each ratio against its target."""
    lines = [
        f"bus benchmark: {result.messages} messages x {result.repeats} repeats"
        + (f" on {result.url}" if result.url else ""),
        f"{'bus':<10}{'msgs/s':>10}{'best':>10}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for row in result.rows:
        lines.append(
            f"{row.name:<10}{row.throughput:>10.0f}{row.best_throughput:>10.0f}"
            f"{row.p50_ms:>10.3f}{row.p99_ms:>10.3f}"
        )
    for key, ratio in result.ratios.items():
        target = result.targets[key]
        verdict = "ok" if ratio >= target else "BELOW TARGET"
        lines.append(f"{key}: {ratio:.2f} (target >= {target:.2f}) {verdict}")
    return "\n".join(lines)
