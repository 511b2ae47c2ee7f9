"""The Runner on the in-process bus: foreign envs, turn order, masks, and agents that misbehave."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.plugins import AgentLoadError
from protocols import Action, Control, Envelope, Observation, seal
from runtime.bus import Bus
from runtime.envs import make_env
from runtime.host import AgentHost
from runtime.local_bus import LocalBus
from runtime.play import build_agents
from runtime.play import play as play_scenario
from runtime.play_settings import PlaySettings
from runtime.runner import Runner
from runtime.scenario import Scenario
from runtime.summary import Incidents, RunSummary


def scenario(env: dict[str, Any], agents: dict[str, Any], **extra: Any) -> Scenario:
    return Scenario.model_validate({"name": "t", "env": env, "agents": agents, **extra})


async def play(s: Scenario, episodes: int = 2, **kw: Any) -> RunSummary:
    return await play_scenario(s, PlaySettings(episodes=episodes, seed=0, **kw))


RPS = {"pettingzoo": "pettingzoo.classic.rps_v2", "options": {"max_cycles": 4}}


async def test_parallel_env_runs_every_step() -> None:
    s = scenario(RPS, {"player_0": {"type": "random"}, "player_1": {"type": "random"}})
    summary = await play(s, episodes=3)
    assert summary.episodes == 3
    assert summary.steps == 12
    assert summary.returns["player_0"] == -summary.returns["player_1"]
    assert summary.incidents == Incidents()


async def test_aec_turn_order_and_masks_respected() -> None:
    # tic-tac-toe with agents that always take the first legal square: the mask must
    # steer them, or the env would end the game for an illegal move.
    s = scenario({"pettingzoo": "pettingzoo.classic.tictactoe_v3"},
                 {"player_1": {"type": "scripted"}, "player_2": {"type": "scripted"}})
    summary = await play(s, episodes=1)
    # squares 0,1,2,... in turn: player_1 takes 0,2,4,6 and wins on the diagonal at step 7.
    assert summary.steps == 7
    assert summary.returns == {"player_1": 1.0, "player_2": -1.0}
    assert summary.incidents.illegal == 0


async def test_mpe_speaker_listener_runs_from_yaml() -> None:
    s = scenario({"pettingzoo": "mpe2.simple_speaker_listener_v4", "options": {"max_cycles": 5}},
                 {"speaker_0": {"type": "random"}, "listener_0": {"type": "random"}})
    summary = await play(s, episodes=1)
    assert summary.steps == 5


async def test_late_agent_gets_default_action_and_run_goes_on() -> None:
    s = scenario(RPS, {"player_0": {"type": "scripted", "options": {"delay_s": 0.3}},
                       "player_1": {"type": "random"}},
                 runtime={"action_timeout_s": 0.05, "default_action": 2})
    with capture_logs() as logs:
        summary = await play(s, episodes=1)
    assert summary.steps == 4
    assert summary.incidents.late == 4
    late = [e for e in logs if e["event"] == "agent_late"]
    assert late and late[0]["agent"] == "player_0" and late[0]["default_action"] == 2


async def test_crashed_agent_is_reported_and_run_goes_on() -> None:
    s = scenario(RPS, {"player_0": {"type": "scripted", "options": {"fail_at_step": 1}},
                       "player_1": {"type": "random"}})
    with capture_logs() as logs:
        summary = await play(s, episodes=1)
    assert summary.steps == 4
    assert summary.incidents.failed == 1
    assert any(e["event"] == "agent_failed" and e["agent"] == "player_0" for e in logs)


async def test_illegal_action_replaced_by_legal_default() -> None:
    # player_1 plays square 0 every turn; from its second turn on that square is taken.
    s = scenario({"pettingzoo": "pettingzoo.classic.tictactoe_v3"},
                 {"player_1": {"type": "tests.runtime.plugin_agents:FirstActionAgent"},
                  "player_2": {"type": "scripted"}})
    with capture_logs() as logs:
        summary = await play(s, episodes=1)
    illegal = [e for e in logs if e["event"] == "illegal_action"]
    # Replaced by the first legal square: player_1 gets 0, 2, 4, 6 and wins on the
    # 2-4-6 diagonal at step 7; player_2 takes 1, 3, 5.
    assert summary.incidents.illegal == 3
    assert summary.incidents.by_agent == {"player_1": 3}
    assert [(e["agent"], e["action"], e["default_action"]) for e in illegal] == [
        ("player_1", 0, 2), ("player_1", 0, 4), ("player_1", 0, 6)]
    assert summary.steps == 7
    assert summary.returns == {"player_1": 1.0, "player_2": -1.0}


async def test_custom_agent_by_import_path() -> None:
    s = scenario(RPS, {"player_0": {"type": "tests.runtime.plugin_agents:LastLegalAgent"},
                       "player_1": {"type": "scripted"}})
    summary = await play(s, episodes=1)
    # the custom agent always plays scissors (2), which loses to rock (0) four times
    assert summary.returns["player_0"] == -4.0


async def test_custom_agent_by_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import agents.plugins

    installed = [EntryPoint("last-legal", "tests.runtime.plugin_agents:LastLegalAgent",
                            "parley.agents")]
    monkeypatch.setattr(agents.plugins, "entry_points", lambda group: installed)
    s = scenario(RPS, {"player_0": {"type": "last-legal"}, "player_1": {"type": "scripted"}})
    summary = await play(s, episodes=1)
    assert summary.returns["player_0"] == -4.0


def test_entry_point_group_lists_builtins() -> None:
    from importlib.metadata import entry_points

    from agents.plugins import agent_class
    names = {ep.name for ep in entry_points(group="parley.agents")}
    assert {"scripted", "random"} <= names
    assert agent_class("random").__name__ == "RandomAgent"


async def test_class_without_protocol_is_refused() -> None:
    s = scenario(RPS, {"player_0": {"type": "tests.runtime.plugin_agents:NotAnAgent"},
                       "player_1": {"type": "random"}})
    with pytest.raises(AgentLoadError, match="does not implement"):
        await play(s)


async def test_bad_agent_options_name_the_agent() -> None:
    s = scenario(RPS, {"player_0": {"type": "scripted", "options": {"bogus": 1}},
                       "player_1": {"type": "random"}})
    with pytest.raises(AgentLoadError, match="player_0"):
        await play(s)


async def test_agents_must_match_env() -> None:
    s = scenario(RPS, {"player_0": {"type": "random"}, "someone": {"type": "random"}})
    with pytest.raises(ValueError, match="someone"):
        await play(s)


async def test_silent_agent_is_not_waited_for_until_heard_from_again() -> None:
    # player_0 plays scissors, but its second speak takes 0.35 s, past both 0.15 s timeouts
    # of step 1: late there, then offline (rock by default, not waited for) until its
    # overdue replies arrive, during step 2 (a step or two later on a slow machine).
    s = scenario({"pettingzoo": "pettingzoo.classic.rps_v2", "options": {"max_cycles": 8}},
                 {"player_0": {"type": "tests.runtime.plugin_agents:SilentOnceAgent",
                               "options": {"silent_s": 0.35, "at_turn": 2}},
                  "player_1": {"type": "scripted", "options": {"actions": [1], "delay_s": 0.1}}},
                 runtime={"speak_timeout_s": 0.15, "action_timeout_s": 0.15, "default_action": 0})
    with capture_logs() as logs:
        summary = await play(s, episodes=1)
    incidents = summary.incidents
    assert incidents.late == 1 and 1 <= incidents.offline <= 3
    assert incidents.failed == incidents.illegal == 0
    defaulted = incidents.late + incidents.offline
    assert incidents.by_agent == {"player_0": defaulted}
    # Scissors beats paper; the default rock loses to it: every other step is its own.
    assert summary.returns["player_0"] == (8 - defaulted) - defaulted
    events = [(e["event"], e["agent"], e["step"]) for e in logs
              if e["event"] in ("agent_silent", "agent_back")]
    assert events[0] == ("agent_silent", "player_0", 1)
    assert events[1][:2] == ("agent_back", "player_0") and len(events) == 2


async def test_speaking_past_its_timeout_counts_late_and_keeps_the_action() -> None:
    # player_0's second speak takes 0.3 s, past the 0.1 s speak timeout but with its act
    # well inside the 2 s action timeout: one late, and its own scissors every step.
    s = scenario({"pettingzoo": "pettingzoo.classic.rps_v2", "options": {"max_cycles": 4}},
                 {"player_0": {"type": "tests.runtime.plugin_agents:SilentOnceAgent",
                               "options": {"silent_s": 0.3, "at_turn": 2}},
                  "player_1": {"type": "scripted", "options": {"actions": [1]}}},
                 runtime={"speak_timeout_s": 0.1, "action_timeout_s": 2.0, "default_action": 0})
    with capture_logs() as logs:
        summary = await play(s, episodes=1)
    assert summary.incidents.model_dump() == {"late": 1, "failed": 0, "illegal": 0, "offline": 0}
    assert summary.returns["player_0"] == 4.0
    late = [(e["agent"], e["step"]) for e in logs if e["event"] == "agent_speak_late"]
    assert late == [("player_0", 1)]


async def test_only_the_first_requested_action_counts() -> None:
    # A hand-written player_0 sends paper before it is asked, answers the act request
    # with rock, then again with scissors, and once to all: only the rock may count.
    async def rogue(bus: Bus) -> None:
        async def send(message: Action | Control, to: Envelope, recipient: str = "runner") -> None:
            await bus.publish(seal(message, run=bus.run, episode=to.episode, step=to.step,
                                   sender="player_0", recipient=recipient))

        async with bus.subscribe("player_0") as stream:
            async for env in stream:
                match env.payload:
                    case Control(command="hello"):
                        await send(Control(command="hello"), env)
                    case Observation():
                        await send(Action(action=1), env)
                        await send(Control(command="spoken"), env)
                    case Control(command="act"):
                        for action, recipient in ((0, "runner"), (2, "runner"), (1, "all")):
                            await send(Action(action=action), env, recipient)
                    case Control(command="stop"):
                        return

    s = scenario(RPS, {"player_0": {"type": "random", "remote": True},
                       "player_1": {"type": "scripted"}})
    async with LocalBus("t", s.registry()) as bus:
        [rock] = build_agents(s, ["player_1"], s.registry(), 0, PlaySettings(episodes=1, seed=0))
        ready = asyncio.Event()
        tasks = [asyncio.create_task(AgentHost(rock, bus, s.allows).serve(ready)),
                 asyncio.create_task(rogue(bus))]
        await ready.wait()
        with capture_logs() as logs:
            [result] = await Runner(make_env(s.env), bus, s.runtime).run(1, ["player_0"])
        await asyncio.gather(*tasks)
    assert result.returns == {"player_0": 0.0, "player_1": 0.0}  # four ties: rock, rock
    dropped = [(e["step"], e["reason"]) for e in logs if e["event"] == "reply_dropped"]
    assert dropped == [(step, reason) for step in range(4)
                       for reason in ("unrequested", "duplicate", "not_to_runner")]
