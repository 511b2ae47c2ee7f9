"""A real mosquitto started from `parley broker-config`'s files: no one speaks or reads
for another, envelope ids are required and de-duplicated, a restart loses nothing."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols import (
    BROADCAST,
    RUNNER,
    Action,
    Control,
    Envelope,
    MalformedEnvelope,
    SchemaRegistry,
    decode,
    seal,
)
from runtime.broker_config import load_credentials, write_broker_config
from runtime.mosquitto import MOSQUITTO_PUB, Mosquitto, MosquittoFactory, find_tool, free_port
from runtime.mqtt_address import BrokerAddress, BusConnectionError
from runtime.mqtt_bus import MqttBus
from runtime.mqtt_filters import Duplicates
from runtime.play import play
from runtime.play_settings import PlaySettings, Tap
from runtime.scenario import load_scenario
from runtime.summary import RunSummary
from tests.runtime.conftest import Note

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).parents[2]
TIMEOUT = 10.0
RUN = "remote"
SCENARIO = """\
name: remote
seed: 3
episodes: 2
env:
  game: matrix
  options: {payoffs: {preset: prisoners_dilemma}, rounds: 4}
agents:
  player_0:
    type: scripted
    options: {actions: [0, 1], delay_s: DELAY}
  player_1: {type: scripted, remote: true, options: {actions: [1]}}
protocol:
  messages: {Note: {fields: {text: {type: str, max_length: 40}}}}
  routes: [{from: player_0, to: player_1, message: Note}]
"""
RETURNS = {"player_0": 2.0, "player_1": 12.0}
"""player_0 plays C, D, C, D and player_1 always D: 0+1+0+1 and 5+1+5+1 an episode."""


@dataclass
class Locked:
    """A broker started from the generated config, and the files around it."""

    broker: Mosquitto
    scenario: Path
    out: Path
    urls: dict[str, str]

    def password(self, name: str) -> str:
        password = BrokerAddress.parse(self.urls[name]).password
        assert password is not None
        return password


def _scenario(tmp_path: Path, delay: float = 0.0) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(SCENARIO.replace("DELAY", str(delay)))
    return path


@pytest.fixture
def locked(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> Locked:
    scenario = _scenario(tmp_path, delay=0.3)
    out = tmp_path / "broker"
    urls = write_broker_config(load_scenario(scenario), out, run=RUN, port=free_port())
    broker = mosquitto_factory(config=out / "mosquitto.conf")
    return Locked(broker, scenario, out, urls)


async def receive(stream: AsyncIterator[Envelope]) -> Envelope:
    return await asyncio.wait_for(anext(stream), TIMEOUT)


def forged(sender: str, recipient: str, message: Control | Action | Note, step: int = 0
           ) -> Envelope:
    schema = "Note@1" if isinstance(message, Note) else None
    return seal(message, run=RUN, episode=0, step=step, sender=sender, recipient=recipient,
                schema_id=schema)


def test_broker_config_writes_owner_only_logins_and_a_per_agent_acl(locked: Locked) -> None:
    out = locked.out
    run, remote = (load_credentials(out / "credentials" / f) for f in ("run.json", "player_1.json"))
    assert run == {n: locked.urls[n] for n in ("runner", "player_0")}  # player_1 is remote
    assert remote == {"player_1": locked.urls["player_1"]}
    for private in [out / "passwords", *(out / "credentials").iterdir()]:
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    hashed = (out / "passwords").read_text()
    assert all(locked.password(name) not in hashed for name in locked.urls)
    acl = (out / "acl").read_text()
    assert "user player_1\ntopic write parley/remote/+/player_1/+\n" \
           "topic read parley/remote/+/+/player_1\ntopic read parley/remote/+/+/all\n" in acl
    config = (out / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "persistence true", f"acl_file {out}/acl"):
        assert f"\n{line}\n" in config


def test_names_that_cannot_be_logins_are_refused(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    with pytest.raises(ValueError, match=r"names must be .* 'a b'"):
        write_broker_config(scenario, tmp_path / "out", run="a b")
    renamed = tmp_path / "spaced.yaml"  # a scenario may allow it; a login may not
    renamed.write_text(_scenario(tmp_path).read_text().replace("player_0", "player 0"))
    with pytest.raises(ValueError, match=r"names must be .* 'player 0'"):
        write_broker_config(load_scenario(renamed), tmp_path / "out", run=RUN)


async def test_anonymous_clients_can_neither_connect_nor_read(locked: Locked) -> None:
    broker = locked.broker
    with pytest.raises(BusConnectionError, match="Not authorized"):
        async with MqttBus(RUN, broker.url):
            pass
    with pytest.raises(BusConnectionError, match="needs a login"):
        async with MqttBus(RUN, broker.url, require_auth=True):
            pass
    mosquitto_sub = find_tool("mosquitto_sub")
    assert MOSQUITTO_PUB and mosquitto_sub, "mosquitto-clients is needed"
    address = ["-h", broker.host, "-p", str(broker.port), "-V", "5"]
    for tool, what in [(mosquitto_sub, ["-t", "parley/#", "-W", "3"]),
                       (MOSQUITTO_PUB, ["-t", f"parley/{RUN}/control/runner/all", "-m", "x"])]:
        done = subprocess.run([tool, *address, *what], capture_output=True, text=True, timeout=10)
        assert done.returncode != 0 and "not author" in done.stderr.lower()


async def test_an_agent_login_cannot_speak_or_read_for_another(
    locked: Locked, registry: SchemaRegistry,
) -> None:
    """player_0's login, used by an outsider, forges the runner and player_1; all dropped."""
    async with (
        MqttBus(RUN, locked.urls["runner"], registry, require_auth=True) as runner,
        MqttBus(RUN, locked.urls["player_1"], registry) as victim,
        MqttBus(RUN, locked.urls["player_0"], registry) as outsider,
        runner.subscribe(RUNNER) as runner_inbox, victim.subscribe("player_1") as victim_inbox,
        outsider.subscribe(None) as overheard,
    ):
        for envelope in (forged(RUNNER, BROADCAST, Control(command="stop")),
                         forged("player_1", BROADCAST, Control(command="offline")),
                         forged("player_1", RUNNER, Action(action=0)),
                         forged(RUNNER, "player_1", Control(command="act")),
                         forged(RUNNER, "player_1", Note(text="from the runner?"))):
            await outsider.publish(envelope)
        mine = [forged("player_0", RUNNER, Action(action=1)),
                forged("player_0", "player_1", Note(text="hello"))]
        for envelope in mine:  # published after the forgeries: arrive after them, if at all
            await outsider.publish(envelope)
        assert await receive(runner_inbox) == mine[0]
        assert await receive(victim_inbox) == mine[1]
        await runner.publish(forged(RUNNER, "player_1", Control(command="act")))
        await runner.publish(forged(RUNNER, "player_0", Control(command="act"), step=1))
        assert (await receive(victim_inbox)).step == 0
        assert (await receive(overheard)).step == 1  # nothing addressed to player_1 first
    assert runner.stats.rejected == victim.stats.rejected == 0


async def test_a_last_will_under_another_name_is_dropped(locked: Locked) -> None:
    mosquitto_sub = find_tool("mosquitto_sub")
    assert mosquitto_sub, "mosquitto-clients is needed"
    password = locked.password("player_0")
    async with MqttBus(RUN, locked.urls["runner"]) as runner, runner.subscribe(None) as heard:
        for name in ("player_1", "player_0"):  # another's will, then its own as a control
            will = forged(name, BROADCAST, Control(command="offline", detail="will"))
            client = subprocess.Popen(
                [mosquitto_sub, "-h", locked.broker.host, "-p", str(locked.broker.port),
                 "-V", "5", "-u", "player_0", "-P", password, "-t", "parley/none",
                 "--will-topic", f"parley/{RUN}/control/{name}/all", "--will-qos", "1",
                 "--will-payload", will.to_json().decode()])  # fmt: skip
            await asyncio.sleep(0.5)
            client.kill()  # dies without a DISCONNECT: the broker sends the will, if allowed
            client.wait()
        assert (await receive(heard)).sender == "player_0"


def test_an_envelope_without_an_id_is_refused(registry: SchemaRegistry) -> None:
    wire = json.loads(forged("a", "b", Note(text="hi")).to_json())
    del wire["id"]
    with pytest.raises(MalformedEnvelope, match="id: Field required"):
        decode(json.dumps(wire), registry)
    wire["id"] = "x" * 65
    with pytest.raises(MalformedEnvelope, match="id: String should have at most 64"):
        decode(json.dumps(wire), registry)


async def test_duplicates_are_dropped_per_sender(
    mosquitto: Mosquitto, registry: SchemaRegistry,
) -> None:
    original = forged("a", "c", Note(text="one"))
    same_id = original.model_copy(update={"sender": "b"})
    no_id = json.loads(original.to_json())
    del no_id["id"]
    async with MqttBus(RUN, mosquitto.url, registry) as bus, bus.subscribe("c") as inbox:
        for _ in range(2):  # an envelope without an id would be new each time: refused
            await bus.publish_raw("parley/remote/say/a/c", json.dumps(no_id).encode())
        for envelope in (original, original, same_id, original):
            await bus.publish(envelope)
        assert [await receive(inbox) for _ in range(2)] == [original, same_id]
        marker = forged("a", "c", Note(text="end"))
        await bus.publish(marker)
        assert await receive(inbox) == marker
    assert bus.stats.rejected == 2
    duplicates = Duplicates(per_sender=2, senders=2)
    assert [duplicates.first("a", i) for i in "xyzx"] == [True, True, True, True]  # x forgotten
    assert [duplicates.first(s, "x") for s in "bca"] == [True, True, True]  # a forgotten


def _remote_agent(locked: Locked) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "agent", str(locked.scenario), "--agent",
         "player_1", "--bus", locked.urls["player_1"], "--run-id", RUN],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


async def _run(locked: Locked, taps: Sequence[Tap] = ()) -> RunSummary:
    """The scenario's two episodes, player_1 in a `parley agent` process of its own."""
    remote = _remote_agent(locked)
    try:
        settings = PlaySettings(
            episodes=2, seed=3, bus=locked.broker.url, run_id=RUN, require_auth=True,
            credentials=load_credentials(locked.out / "credentials" / "run.json"),
            taps=taps)
        summary = await asyncio.wait_for(play(load_scenario(locked.scenario), settings), 90)
        assert await asyncio.to_thread(remote.wait, 30) == 0, remote.communicate()[1]
    finally:
        if remote.poll() is None:
            remote.kill()
    return summary


async def _attack(locked: Locked, registry: SchemaRegistry, sent: list[Envelope]) -> None:
    """player_0's login forges the runner's stop, player_1's offline, actions and words."""
    async with MqttBus(RUN, locked.urls["player_0"], registry) as outsider:
        while True:
            for episode, step in [(e, s) for e in range(2) for s in range(4)]:
                for envelope in (forged(RUNNER, BROADCAST, Control(command="stop")),
                                 forged("player_1", BROADCAST, Control(command="offline")),
                                 forged("player_1", RUNNER, Action(action=0), step=step),
                                 forged(RUNNER, "player_1", Control(command="act"), step=step)):
                    envelope = envelope.model_copy(update={"episode": episode})
                    await outsider.publish(envelope)
                    sent.append(envelope)
            await asyncio.sleep(0.05)


async def test_an_attacker_with_an_agent_login_changes_nothing(
    locked: Locked, registry: SchemaRegistry,
) -> None:
    baseline = await _run(locked)
    sent: list[Envelope] = []
    attacker = asyncio.create_task(_attack(locked, load_scenario(locked.scenario).registry(), sent))
    try:
        attacked = await _run(locked)
    finally:
        attacker.cancel()
    assert len(sent) > 100
    assert baseline.returns == attacked.returns == RETURNS
    assert baseline.per_episode == attacked.per_episode
    assert not any(attacked.incidents.model_dump().values())
    assert attacked.messages.rejected == 0  # the broker dropped every forgery


async def test_a_broker_restart_mid_run_loses_nothing(locked: Locked) -> None:
    """Persistence on (the generated config): queued envelopes and sessions survive."""
    asked = asyncio.Event()

    def tap(envelope: Envelope) -> None:  # player_0 thinks 0.3 s: the restart fits in it
        if envelope.payload == Control(command="act") and envelope.recipient == "player_0":
            asked.set()

    async def restart_when_asked() -> None:
        await asked.wait()
        await asyncio.to_thread(locked.broker.restart)

    restarting = asyncio.create_task(restart_when_asked())
    summary = await _run(locked, taps=[tap])
    assert restarting.done() and restarting.exception() is None
    assert "Saving in-memory database" in locked.broker.log()
    assert summary.returns == RETURNS
    assert not any(summary.incidents.model_dump().values())
