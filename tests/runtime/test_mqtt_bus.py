"""MqttBus against real Mosquitto brokers: restarts, outside clients, auth, ACL, TLS, presence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agents.base import AgentContext
from agents.scripted import ScriptedAgent
from protocols import Control, Envelope, SchemaRegistry, seal
from runtime import mqtt_filters, mqtt_outbox, mqtt_retry
from runtime.aio import tolerate_closed_socket_races
from runtime.bench_bus import bench_bus, render_bench
from runtime.host import AgentHost
from runtime.mosquitto import MOSQUITTO_PUB, Mosquitto, MosquittoFactory, free_port
from runtime.mqtt_address import BrokerAddress, BusConnectionError
from runtime.mqtt_bus import ConnectionState, MqttBus
from tests.runtime.conftest import Note

TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]


def note(run: str, sender: str, recipient: str, seq: int = 0) -> Envelope:
    return seal(Note(text=f"message {seq}", seq=seq), run=run, episode=0, step=seq,
                sender=sender, recipient=recipient, schema_id="Note@1")  # fmt: skip


def new_run() -> str:
    return f"mqtt-{uuid.uuid4().hex[:8]}"


async def receive(stream: AsyncIterator[Envelope]) -> Envelope:
    return await asyncio.wait_for(anext(stream), TIMEOUT)


def state(bus: MqttBus) -> ConnectionState:  # a call: mypy does not narrow it
    return bus.state


def test_broker_urls_parse() -> None:
    assert BrokerAddress.parse("mqtt://broker:1884") == BrokerAddress("broker", 1884, tls=False)
    assert BrokerAddress.parse("mqtts://broker") == BrokerAddress("broker", 8883, tls=True)
    assert BrokerAddress.parse("mqtt://al%40ce:p%3Ass@h") == BrokerAddress(
        "h", 1883, tls=False, username="al@ce", password="p:ss"
    )
    assert str(BrokerAddress.parse("mqtt://u:secret@h:1")) == "mqtt://h:1"
    with pytest.raises(ValueError, match="mqtt://host:port"):
        BrokerAddress.parse("http://h:1883")


@pytest.mark.mqtt
async def test_broker_restart_loses_no_envelope(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry
) -> None:
    broker = mosquitto_factory(persistence=True)
    run, total = new_run(), 300
    with capture_logs() as logs:
        async with (
            MqttBus(run, broker.url, registry) as alice,
            MqttBus(run, broker.url, registry) as bob,
            bob.subscribe("b") as inbox,
        ):
            for seq in range(100):  # some still queued at the broker when it stops
                await alice.publish(note(run, "a", "b", seq))
            await asyncio.to_thread(broker.stop)
            for seq in range(100, 200):  # buffered while the broker is down
                await alice.publish(note(run, "a", "b", seq))
            await asyncio.to_thread(broker.start)
            for seq in range(200, total):
                await alice.publish(note(run, "a", "b", seq))
            got = [(await receive(inbox)).step for _ in range(total)]
    assert got == list(range(total))
    events = [entry["event"] for entry in logs]
    assert events.count("mqtt_disconnected") == 2
    assert events.count("mqtt_reconnected") == 2


@pytest.mark.mqtt
async def test_what_the_broker_acknowledged_lately_is_sent_again_after_a_restart(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crashed broker loses what it acknowledged but had not delivered; here the broker
    acknowledges notes nobody reads yet. Those acknowledged in the last RESEND_S are
    resent after the restart, the older one is not, none arrives twice. Persistence
    keeps bob's subscription through the restart, whoever of the two reconnects first."""
    clock = [0.0]  # the outbox's clock, so that how long the restart takes does not matter
    monkeypatch.setattr(mqtt_outbox, "monotonic", lambda: clock[0])
    broker = mosquitto_factory(persistence=True)
    run = new_run()
    async with MqttBus(run, broker.url, registry) as alice:
        await alice.publish(note(run, "a", "b", 0))
        while alice._outbox:
            await asyncio.sleep(0.01)
        clock[0] = 1.0 + mqtt_outbox.RESEND_S  # acknowledged too long ago to be resent
        for seq in (1, 2):
            await alice.publish(note(run, "a", "b", seq))
        while alice._outbox:  # all three acknowledged, dropped unread by the broker
            await asyncio.sleep(0.01)
        async with MqttBus(run, broker.url, registry) as bob, bob.subscribe("b") as inbox:
            await asyncio.to_thread(broker.restart)
            await alice.publish(note(run, "a", "b", 3))
            got = [(await receive(inbox)).step for _ in range(3)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(inbox), 0.5)
    assert got == [1, 2, 3]


@pytest.mark.mqtt
async def test_a_refused_reconnection_is_retried(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry
) -> None:
    """A refusal must not look live: aiomqtt skips the CONNACK wait on re-entry."""
    broker = mosquitto_factory(users={"alice": "pa"})
    run = new_run()
    async with MqttBus(run, broker.url_for("alice", "pa"), registry) as alice:
        await asyncio.to_thread(broker.restart, {"alice": "changed"})
        await asyncio.sleep(1.0)  # several attempts, each refused
        assert alice.state is ConnectionState.CONNECTING
        async with alice.subscribe("b") as inbox:  # subscribed at the next connection
            await alice.publish(note(run, "a", "b", 1))  # buffered
            await asyncio.to_thread(broker.restart, {"alice": "pa"})
            assert (await receive(inbox)).step == 1
            assert state(alice) is ConnectionState.READY
    assert state(alice) is ConnectionState.CLOSED


@pytest.mark.mqtt
async def test_garbage_from_an_outside_client_is_rejected(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry
) -> None:
    assert MOSQUITTO_PUB is not None, "mosquitto_pub is not installed"
    broker = mosquitto_factory()
    run = new_run()
    topic = f"parley/{run}/say/x/y"
    async with MqttBus(run, broker.url, registry) as bus, bus.subscribe(None) as everything:
        with capture_logs() as logs:
            outsider = await asyncio.create_subprocess_exec(
                MOSQUITTO_PUB, "-h", broker.host, "-p", str(broker.port),
                "-t", topic, "-m", "{garbage", "-q", "1",
            )  # fmt: skip
            assert await outsider.wait() == 0
            valid = note(run, "x", "y")
            await bus.publish(valid)
            assert await receive(everything) == valid
    assert bus.stats.rejected == 1
    assert [(e["event"], e["topic"]) for e in logs if e["log_level"] == "warning"] == [
        ("envelope_rejected", topic)
    ]


@pytest.mark.mqtt
async def test_duplicate_ids_are_delivered_once(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry
) -> None:
    broker = mosquitto_factory()
    run = new_run()
    async with MqttBus(run, broker.url, registry) as bus, bus.subscribe("b") as inbox:
        first, marker = note(run, "a", "b", 1), note(run, "a", "b", 2)
        for envelope in (first, first, marker):
            await bus.publish(envelope)
        assert [await receive(inbox), await receive(inbox)] == [first, marker]


@pytest.mark.mqtt
async def test_wrong_password_is_a_clear_error(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(users={"alice": "s3cret"})
    with pytest.raises(BusConnectionError) as refused:
        async with MqttBus("r", broker.url_for("alice", "wrong")):
            pass
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to {broker.url}:")
    assert "wrong" not in message
    assert "bad user name or password" in message.lower() or "not authorized" in message.lower()


@pytest.mark.mqtt
async def test_no_broker_is_a_clear_error_after_a_short_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mqtt_retry, "FIRST_CONNECT_S", 0.3)
    url = f"mqtt://127.0.0.1:{free_port()}"
    with pytest.raises(BusConnectionError, match=f"cannot connect to {url}: .*refused"):
        async with MqttBus("r", url):
            pass


@pytest.mark.mqtt
async def test_a_broker_that_starts_late_is_waited_for(registry: SchemaRegistry) -> None:
    """A broker (re)starting as a process connects for the first time: it waits."""
    with Mosquitto() as broker:
        broker.stop()
        run = new_run()
        starting = asyncio.get_running_loop().call_later(
            0.5, lambda: asyncio.ensure_future(asyncio.to_thread(broker.start)))
        async with MqttBus(run, broker.url, registry) as bus, bus.subscribe("b") as inbox:
            await bus.publish(note(run, "a", "b"))
            assert (await receive(inbox)).sender == "a"
        starting.cancel()


@pytest.mark.mqtt
async def test_tls(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    broker = mosquitto_factory(tls=(cert, key))
    run = new_run()
    trusted = ssl.create_default_context(cafile=str(cert))
    async with MqttBus(run, broker.url, registry, tls=trusted) as bus, bus.subscribe("b") as inbox:
        await bus.publish(note(run, "a", "b"))
        assert (await receive(inbox)).sender == "a"
    with pytest.raises(BusConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        async with MqttBus(run, broker.url, registry):  # mqtts:// with the system CAs
            pass


GHOST = """
import asyncio, sys
import structlog
from runtime.mqtt_bus import MqttBus

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

async def main():
    async with MqttBus(sys.argv[1], sys.argv[2], presence="ghost"):
        print("ready", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def presence(envelope: Envelope) -> tuple[str, str]:
    assert isinstance(envelope.payload, Control)
    return envelope.sender, envelope.payload.command


@pytest.mark.mqtt
async def test_last_will_announces_a_killed_agent(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory()
    run = new_run()
    async with MqttBus(run, broker.url) as observer, observer.subscribe("observer") as inbox:
        ghost = await asyncio.create_subprocess_exec(
            sys.executable, "-c", GHOST, run, broker.url,
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert ghost.stdout is not None
            assert await asyncio.wait_for(ghost.stdout.readline(), 30) == b"ready\n"
            ghost.kill()
            offline = await receive(inbox)
        finally:
            if ghost.returncode is None:
                ghost.kill()
            await ghost.wait()
    assert presence(offline) == ("ghost", "offline")
    assert (offline.kind, offline.recipient) == ("control", "all")


@pytest.mark.mqtt
@pytest.mark.parametrize("runner", ["runner", None], ids=["runner-announces", "silent-runner"])
async def test_the_runners_hello_after_a_reconnection_brings_agents_back(
    mosquitto_factory: MosquittoFactory, registry: SchemaRegistry, runner: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's hello is lost while the runner is locked out (no persistence); the
    runner's own hello, once it is back and subscribed, makes the agent's host answer,
    and the will Mosquitto sent as it stopped is dropped, not handed on after its grace."""
    monkeypatch.setattr(mqtt_filters, "WILL_GRACE_S", 1.0)
    broker = mosquitto_factory(users={"runner": "r", "p": "p"})
    run = new_run()
    async with (
        MqttBus(run, broker.url_for("runner", "r"), registry, presence=runner) as bus,
        bus.subscribe("runner") as inbox,
        MqttBus(run, broker.url_for("p", "p"), registry, presence="p") as agent,
    ):
        idle = ScriptedAgent(AgentContext("p", [], registry))
        host = asyncio.create_task(AgentHost(idle, agent, lambda *_: False).serve())
        assert presence(await receive(inbox)) == ("p", "hello")  # the host's, once subscribed
        await asyncio.to_thread(broker.restart, {"runner": "locked out", "p": "p"})
        while state(agent) is not ConnectionState.READY or agent._outbox:  # its hello is out
            await asyncio.sleep(0.05)
        broker.reload({"runner": "r", "p": "p"})
        while state(bus) is not ConnectionState.READY:
            await asyncio.sleep(0.05)
        heard: list[tuple[str, str]] = []
        with contextlib.suppress(TimeoutError):  # until quiet for longer than a will's grace
            while True:
                heard.append(presence(await asyncio.wait_for(anext(inbox), 2.0)))
        host.cancel()
    assert heard == [("p", "hello")] if runner else ("p", "hello") not in heard


@pytest.mark.mqtt
async def test_presence_says_bye(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory()
    run = new_run()
    async with MqttBus(run, broker.url) as observer, observer.subscribe(None) as everything:
        async with MqttBus(run, broker.url, presence="p1"):
            pass  # no hello at connect: the host says it once subscribed
        assert presence(await receive(everything)) == ("p1", "bye")


@pytest.mark.mqtt
async def test_bench_bus_measures_every_pair(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory()
    result = await bench_bus(broker.url, messages=200, repeats=1)
    assert [row.name for row in result.rows] == ["local", "queue", "mqtt", "aiomqtt"]
    assert all(row.throughput > 0 and 0 < row.p50_ms <= row.p99_ms for row in result.rows)
    assert set(result.ratios) == {"local/queue", "mqtt/aiomqtt"}
    assert result.ratios["mqtt/aiomqtt"] == pytest.approx(
        result.row("mqtt").throughput / result.row("aiomqtt").throughput
    )
    assert json.loads(json.dumps(result.as_dict()))["url"] == broker.url
    table = render_bench(result)
    assert "mqtt/aiomqtt" in table and "aiomqtt" in table.splitlines()[5]


@pytest.mark.mqtt
async def test_names_that_would_break_topics_are_refused(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = mosquitto_factory()
    with pytest.raises(ValueError, match="run 'a/b'"):
        MqttBus("a/b", broker.url)
    async with MqttBus(new_run(), broker.url) as bus:
        with pytest.raises(ValueError, match="subscriber name '#'"):
            async with bus.subscribe("#"):
                pass


async def test_a_socket_closed_before_its_registration_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiomqtt's race: add_writer for a descriptor that closed before the call ran."""
    loop = asyncio.get_running_loop()
    tolerate_closed_socket_races(loop)
    tolerate_closed_socket_races(loop)  # twice changes nothing
    closed = socket.socket()
    fileno = closed.fileno()
    closed.close()
    with capture_logs() as logs:
        loop.call_soon(loop.add_writer, fileno, lambda: None)
        loop.call_soon(loop.add_reader, -1, lambda: None)
        loop.call_soon(_fails)  # any other error is still asyncio's to report
        await asyncio.sleep(0.05)
    races = [e for e in logs if e["event"] == "mqtt_socket_closed_before_registration"]
    assert len(races) == 2
    reported = [r for r in caplog.records if r.name == "asyncio"]
    assert len(reported) == 1 and "boom" in str(reported[0].exc_info)


def _fails() -> None:
    raise RuntimeError("boom")
