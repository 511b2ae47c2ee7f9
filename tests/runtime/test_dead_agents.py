"""A remote agent killed mid-run (SIGKILL, over a real Mosquitto): the run finishes.

The broker publishes the dead agent's last will at once; from then on the runner
plays its default action without waiting, counts each such step as `offline`, and
takes the agent back when a new process for it says hello.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocols import Action, Envelope, Observation
from runtime.mosquitto import Mosquitto, find_tool
from runtime.recorder import read_recording

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).parents[2]
PARLEY = [sys.executable, "-m", "runtime.cli"]
# Seconds a healthy step needs are milliseconds; a run that waited out these for every
# step of a dead agent would still finish, but slowly.
RUNTIME = "runtime: {speak_timeout_s: 2.0, action_timeout_s: 2.0, remote_timeout_s: 30.0}\n"

CONNECT_FOUR = """\
name: dead-aec
env: {pettingzoo: pettingzoo.classic.connect_four_v3}
agents:
  player_0: {type: random}
  player_1: {type: scripted, remote: true, options: {delay_s: 0.2}}
""" + RUNTIME

SIMPLE_SPREAD = """\
name: dead-parallel
env: {pettingzoo: mpe2.simple_spread_v3, options: {max_cycles: 8}}
agents:
  agent_0: {type: random}
  agent_1: {type: random}
  agent_2: {type: scripted, remote: true, options: {actions: [1, 2], delay_s: 0.2}}
""" + RUNTIME

MATRIX = """\
name: back
env: {game: matrix, options: {payoffs: {preset: prisoners_dilemma}, rounds: 30}}
agents:
  player_0: {type: scripted, options: {delay_s: 0.1}}
  player_1: {type: scripted, remote: true, options: {actions: [ACTION], delay_s: 0.1}}
""" + RUNTIME


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _agent(scenario: Path, name: str, broker: Mosquitto, run_id: str) -> subprocess.Popen[str]:
    """`parley agent`, its log in a file next to the scenario (a pipe nobody reads fills)."""
    with (scenario.parent / f"{scenario.stem}-{name}.log").open("w") as stderr:
        return subprocess.Popen([*PARLEY, "agent", str(scenario), "--agent", name, "--bus",
                                 broker.url, "--run-id", run_id], cwd=ROOT, text=True,
                                stdout=subprocess.DEVNULL, stderr=stderr)


def _run(scenario: Path, broker: Mosquitto, run_id: str, tmp_path: Path
         ) -> subprocess.Popen[str]:
    """`parley run --quiet`, recording, with the summary in tmp_path/summary.json."""
    return subprocess.Popen([*PARLEY, "run", str(scenario), "--bus", broker.url, "--run-id",
                             run_id, "--quiet", "--summary", str(tmp_path / "summary.json"),
                             "--record", str(tmp_path / "run.jsonl")],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_after_actions(broker: Mosquitto, run_id: str, agent: str, actions: int,
                        victim: subprocess.Popen[str]) -> None:
    """SIGKILL `victim` once the broker has passed on `actions` of its actions."""
    sub = find_tool("mosquitto_sub")
    assert sub, "mosquitto-clients is needed"
    watch = subprocess.run([sub, "-h", broker.host, "-p", str(broker.port), "-C", str(actions),
                            "-W", "60", "-t", f"parley/{run_id}/action/{agent}/runner"],
                           stdout=subprocess.DEVNULL, timeout=90)
    assert watch.returncode == 0
    victim.kill()
    assert victim.wait(timeout=10) == -9


def _finish(run: subprocess.Popen[str], tmp_path: Path) -> tuple[dict[str, Any], list[Envelope]]:
    _, stderr = run.communicate(timeout=90)
    assert run.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    return summary, list(read_recording(tmp_path / "run.jsonl"))


def _steps_of(agent: str, envelopes: list[Envelope]) -> tuple[int, int]:
    """Observations the runner sent `agent`, and actions it sent back."""
    observed = sum(isinstance(e.payload, Observation) and e.recipient == agent for e in envelopes)
    acted = sum(isinstance(e.payload, Action) and e.sender == agent for e in envelopes)
    return observed, acted


@pytest.mark.parametrize(("text", "victim"), [(CONNECT_FOUR, "player_1"),
                                              (SIMPLE_SPREAD, "agent_2")], ids=["aec", "parallel"])
def test_killed_remote_agent_gets_default_actions_and_run_finishes(
        tmp_path: Path, broker: Mosquitto, text: str, victim: str) -> None:
    scenario = _write(tmp_path, "dead.yaml", text)
    remote = _agent(scenario, victim, broker, "dead")
    run = _run(scenario, broker, "dead", tmp_path)
    _kill_after_actions(broker, "dead", victim, 1, remote)
    summary, envelopes = _finish(run, tmp_path)
    observed, acted = _steps_of(victim, envelopes)
    assert 1 <= acted < observed
    # Every step it did not answer is counted as offline: none waited out a timeout.
    assert summary["incidents"] == {"late": 0, "failed": 0, "illegal": 0,
                                    "offline": observed - acted}
    if victim == "agent_2":
        assert summary["steps"] == 8


def test_agent_that_comes_back_is_taken_back(tmp_path: Path, broker: Mosquitto) -> None:
    # The first player_1 defects (1), its successor cooperates (0): the recording tells
    # whose actions the runner got. The default action, cooperate, is never recorded.
    first = _write(tmp_path, "first.yaml", MATRIX.replace("ACTION", "1"))
    successor = _write(tmp_path, "successor.yaml", MATRIX.replace("ACTION", "0"))
    remote = _agent(first, "player_1", broker, "back")
    run = _run(first, broker, "back", tmp_path)
    _kill_after_actions(broker, "back", "player_1", 1, remote)
    comeback = _agent(successor, "player_1", broker, "back")
    summary, envelopes = _finish(run, tmp_path)
    assert comeback.wait(timeout=30) == 0, (tmp_path / "successor-player_1.log").read_text()
    observed, acted = _steps_of("player_1", envelopes)
    later = [e for e in envelopes if isinstance(e.payload, Action) and e.sender == "player_1"
             and e.payload.action == 0]
    assert later and acted < observed
    assert summary["incidents"]["offline"] == observed - acted >= 1
    assert summary["incidents"]["late"] == 0
