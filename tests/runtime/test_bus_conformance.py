"""One contract, every Bus: LocalBus and MqttBus pass these same tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from protocols import Control, Envelope, MalformedEnvelope, seal
from runtime.bus import Bus, topic_for
from tests.runtime.conftest import Note

BusFactory = Callable[[str], Awaitable[Bus]]

TIMEOUT = 5.0


def note(run: str, sender: str, recipient: str, text: str = "hi", seq: int = 0) -> Envelope:
    return seal(Note(text=text, seq=seq), run=run, episode=0, step=seq,
                sender=sender, recipient=recipient, schema_id="Note@1")  # fmt: skip


def text(envelope: Envelope) -> str:
    assert isinstance(envelope.payload, Note)
    return envelope.payload.text


def new_run() -> str:
    return f"conf-{uuid.uuid4().hex[:8]}"


async def receive(stream: AsyncIterator[Envelope]) -> Envelope:
    return await asyncio.wait_for(anext(stream), TIMEOUT)


async def test_one_sender_arrives_in_order(bus_factory: BusFactory) -> None:
    run = new_run()
    alice, bob = await bus_factory(run), await bus_factory(run)
    async with bob.subscribe("b") as inbox:
        for seq in range(200):
            await alice.publish(note(run, "a", "b", seq=seq))
        got = [(await receive(inbox)).step for _ in range(200)]
    assert got == list(range(200))


async def test_delivers_only_to_the_addressed_agent(bus_factory: BusFactory) -> None:
    run = new_run()
    alice, bob, carol = [await bus_factory(run) for _ in range(3)]
    async with bob.subscribe("b") as to_bob, carol.subscribe("c") as to_carol:
        await alice.publish(note(run, "a", "c", "for carol"))
        await alice.publish(note(run, "a", "b", "for bob"))
        first_for_bob = await receive(to_bob)
        first_for_carol = await receive(to_carol)
    assert text(first_for_bob) == "for bob"
    assert text(first_for_carol) == "for carol"


async def test_broadcast_reaches_everyone_but_the_sender(bus_factory: BusFactory) -> None:
    run = new_run()
    alice, bob, carol = [await bus_factory(run) for _ in range(3)]
    async with (
        alice.subscribe("a") as to_alice,
        bob.subscribe("b") as to_bob,
        carol.subscribe("c") as to_carol,
    ):
        await alice.publish(note(run, "a", "all", "hello all"))
        await bob.publish(note(run, "b", "a", "after the broadcast"))
        assert text(await receive(to_bob)) == "hello all"
        assert text(await receive(to_carol)) == "hello all"
        assert text(await receive(to_alice)) == "after the broadcast"


async def test_none_subscription_sees_everything(bus_factory: BusFactory) -> None:
    run = new_run()
    alice, recorder = await bus_factory(run), await bus_factory(run)
    sent = [note(run, "a", to) for to in ("b", "c", "all", "runner")]
    async with recorder.subscribe(None) as everything:
        for envelope in sent:
            await alice.publish(envelope)
        got = [await receive(everything) for _ in sent]
    assert got == sent


async def test_one_bus_serves_several_subscriptions(bus_factory: BusFactory) -> None:
    run = new_run()
    alice, runner = await bus_factory(run), await bus_factory(run)
    async with runner.subscribe("runner") as to_runner, runner.subscribe(None) as recorder:
        await alice.publish(note(run, "a", "b", "not for the runner"))
        await alice.publish(note(run, "a", "runner", "action"))
        assert text(await receive(to_runner)) == "action"
        assert text(await receive(recorder)) == "not for the runner"
        assert text(await receive(recorder)) == "action"


def malformed(run: str) -> list[tuple[str, bytes]]:
    """(topic, bytes) pairs that no receiver may accept."""
    topic = f"parley/{run}/say/a/b"
    valid = note(run, "a", "b")

    def edited(**fields: object) -> bytes:
        return json.dumps(json.loads(valid.to_json()) | fields).encode()

    return [
        (topic, b"not json at all"),
        (topic, b'{"hello": "world"}'),
        (topic, edited(payload={"seq": 1})),
        (topic, edited(schema="Nope@1")),
        (f"parley/{run}/say/mallory/b", valid.to_json()),
    ]


async def test_malformed_payloads_are_rejected_and_counted(bus_factory: BusFactory) -> None:
    run = new_run()
    bus = await bus_factory(run)
    bad = malformed(run)
    async with bus.subscribe(None) as everything:
        with capture_logs() as logs:
            for topic, raw in bad:
                await bus.publish_raw(topic, raw)
            valid = note(run, "a", "b", "still alive")
            await bus.publish_raw(topic_for(valid), valid.to_json())
            assert await receive(everything) == valid
    assert bus.stats.rejected == len(bad)
    rejected = [entry for entry in logs if entry["event"] == "envelope_rejected"]
    assert len(rejected) == len(bad)
    assert rejected[0]["log_level"] == "warning"


async def test_publish_refuses_an_invalid_payload(bus_factory: BusFactory) -> None:
    run = new_run()
    bus = await bus_factory(run)
    wrong_model = note(run, "a", "b").model_copy(update={"payload": Control(command="stop")})
    with pytest.raises(MalformedEnvelope, match="payload of Note@1 is a Control, not a Note"):
        await bus.publish(wrong_model)
    with pytest.raises(MalformedEnvelope, match="Note@1"):
        await bus.publish(note(run, "a", "b").model_copy(update={"payload": {"text": 3}}))
    with pytest.raises(MalformedEnvelope, match="unknown schema"):
        await bus.publish(note(run, "a", "b").model_copy(update={"schema_id": "Nope@1"}))
    assert bus.stats.published == 0


async def test_stats_count_published_and_delivered(bus_factory: BusFactory) -> None:
    run = new_run()
    bus = await bus_factory(run)
    async with bus.subscribe("b") as to_b, bus.subscribe(None) as everything:
        await bus.publish(note(run, "a", "b"))
        await receive(to_b)
        await receive(everything)
    assert (bus.stats.published, bus.stats.delivered) == (1, 2)


async def test_subscription_ends_when_the_bus_closes(bus_factory: BusFactory) -> None:
    run = new_run()
    bus = await bus_factory(run)
    async with bus.subscribe("b") as to_b, bus.subscribe(None) as everything:
        sent = note(run, "a", "b")
        await bus.publish(sent)
        assert await receive(everything) == sent
        await bus.__aexit__(None, None, None)
        assert [envelope async for envelope in to_b] == [sent]  # what came before the close
        assert [envelope async for envelope in to_b] == []  # and it stays ended
        assert [envelope async for envelope in everything] == []
