"""Faulty plug-ins cannot stall or abort a run: each fault is counted, the step goes on.

The runs wait up to 5 s for each reply (but 0.1 s for the blocking agent's action), so
one that waited out a single timeout would take seconds; a healthy one takes a fraction
of one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario
from runtime.summary import RunSummary

pytestmark = pytest.mark.usefixtures("quiet")
PLUGINS = "tests.runtime.plugin_agents"
RPS = {"pettingzoo": "pettingzoo.classic.rps_v2", "options": {"max_cycles": 4}}
TICTACTOE = {"pettingzoo": "pettingzoo.classic.tictactoe_v3"}
PATIENT = {"speak_timeout_s": 5.0, "action_timeout_s": 5.0}
HEALTHY_RUN_S = 1.0
"""A 4-step run of plug-ins that answer at once takes milliseconds; this is ample."""


def scenario(env: dict[str, Any], faulty: dict[str, Any], runtime: dict[str, Any]) -> Scenario:
    """player_0 (or player_1 in tic-tac-toe) is the faulty plug-in; the other is scripted."""
    first, second = ("player_1", "player_2") if env is TICTACTOE else ("player_0", "player_1")
    return Scenario.model_validate({
        "name": "faulty", "env": env, "runtime": runtime,
        "agents": {first: faulty, second: {"type": "scripted"}}})


@pytest.fixture
def quiet(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
          ) -> Iterator[None]:
    """The test's run must leave no traceback: not on stderr, not in stdlib logging
    (where asyncio reports a task that died of an exception)."""
    yield
    assert "Traceback" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def run_once(s: Scenario) -> tuple[RunSummary, list[MutableMapping[str, Any]]]:
    """Play one episode; structlog's events come back too (none with a traceback)."""
    with capture_logs() as logs:
        summary = await play(s, PlaySettings(episodes=1, seed=0))
    assert not [e for e in logs if "exc_info" in e or "exception" in e]
    return summary, logs


@pytest.mark.parametrize(("plugin", "kind", "phase"), [
    ("NegativeChoiceAgent", "illegal", "act"),
    ("BareIntAgent", "failed", "act"),
    ("DictSpeakerAgent", "failed", "speak"),
    ("RaisingSpeakerAgent", "failed", "speak"),
    ("ActionSpeakerAgent", "failed", "speak"),
])
async def test_faulty_return_or_raise_is_counted_every_step_without_stalling(
        plugin: str, kind: str, phase: str) -> None:
    s = scenario(RPS, {"type": f"{PLUGINS}:{plugin}"}, PATIENT)
    summary, logs = await run_once(s)
    assert summary.steps == 4
    assert summary.wall_s < HEALTHY_RUN_S
    counts = summary.incidents.model_dump()
    assert counts == {"late": 0, "failed": 0, "illegal": 0, "offline": 0} | {kind: 4}
    assert summary.incidents.by_agent == {"player_0": 4}
    failures = [e for e in logs if e["event"] == "agent_failed"]
    assert [(e["agent"], e["phase"]) for e in failures] == [("player_0", phase)] * 4


async def test_invalid_action_gets_the_default_action() -> None:
    # Rock (0) is the default; the scripted opponent plays rock too: four ties.
    s = scenario(RPS, {"type": f"{PLUGINS}:BareIntAgent"}, PATIENT | {"default_action": 0})
    summary, logs = await run_once(s)
    assert summary.returns == {"player_0": 0.0, "player_1": 0.0}
    defaults = [e for e in logs if e["event"] == "agent_failed_default_action"]
    assert [e["default_action"] for e in defaults] == [0] * 4
    assert "not a Choice" in defaults[0]["error"]


async def test_failed_speak_still_plays_the_agents_own_action() -> None:
    # The plug-in acts scissors (its last legal action) and beats nothing but paper; the
    # scripted opponent plays rock, so its own actions lose all four rounds.
    s = scenario(RPS, {"type": f"{PLUGINS}:DictSpeakerAgent"}, PATIENT | {"default_action": 1})
    summary, logs = await run_once(s)
    assert summary.returns["player_0"] == -4.0
    spoken = [e for e in logs if e["event"] == "agent_speak_failed"]
    assert len(spoken) == 4 and "not a list of Utterance" in spoken[0]["error"]


async def test_blocking_act_counts_late_and_is_named() -> None:
    sleep_s = 0.4
    s = scenario(TICTACTOE, {"type": f"{PLUGINS}:BlockingAgent", "options": {"sleep_s": sleep_s}},
                 {"speak_timeout_s": 5.0, "action_timeout_s": 0.1})
    summary, logs = await run_once(s)
    # Only its first act blocks: the run costs that sleep and no timeout more.
    assert summary.wall_s < sleep_s + HEALTHY_RUN_S
    assert summary.incidents.late == 1 and summary.incidents.by_agent == {"player_1": 1}
    blocked = [e for e in logs if e["event"] == "agent_blocked_event_loop"]
    assert [(e["agent"], e["phase"], e["step"]) for e in blocked] == [("player_1", "act", 0)]
    assert blocked[0]["blocked_s"] >= sleep_s
    dropped = [e for e in logs if e["event"] == "reply_dropped"]
    assert [(e["agent"], e["reason"], e["step"]) for e in dropped] == [("player_1", "late", 0)]
