"""Agents in separate OS processes over a real Mosquitto broker (`parley agent`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.mosquitto import Mosquitto
from runtime.recorder import read_recording

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).parents[2]
PARLEY = [sys.executable, "-m", "runtime.cli"]

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
    options:
      actions: [0, 1]
      delay_s: DELAY
      messages: [{to: player_1, message: Note, payload: {text: "I cooperate first."}}]
  player_1:
    type: scripted
    remote: true
    options: {actions: [1]}
protocol:
  messages: {Note: {fields: {text: {type: str, max_length: 40}}}}
  routes: [{from: player_0, to: player_1, message: Note}]
"""


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto


def _scenario(tmp_path: Path, delay: float = 0.0) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(SCENARIO.replace("DELAY", str(delay)))
    return path


def _agent(scenario: Path, name: str, url: str, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PARLEY, "agent", str(scenario), "--agent", name, "--bus", url,
                             "--run-id", run_id], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_agent_in_its_own_process_plays_over_mqtt(tmp_path: Path, broker: Mosquitto) -> None:
    scenario = _scenario(tmp_path)
    remote = _agent(scenario, "player_1", broker.url, "r1")
    summary, recording = tmp_path / "summary.json", tmp_path / "run.jsonl"
    run = subprocess.run([*PARLEY, "run", str(scenario), "--bus", broker.url, "--run-id", "r1",
                          "--quiet", "--summary", str(summary), "--record", str(recording)],
                         cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    assert remote.wait(timeout=30) == 0  # the runner's stop ends the remote agent
    result = json.loads(summary.read_text())
    assert result["episodes"] == 2 and result["steps"] == 8
    assert result["incidents"] == {"late": 0, "failed": 0, "illegal": 0, "offline": 0}
    # player_0 plays C, D, C, D; player_1 always defects: 0+1+0+1 per episode.
    assert result["returns"] == {"player_0": 2.0, "player_1": 12.0}
    envelopes = list(read_recording(recording))
    notes = [e for e in envelopes if e.kind == "say"]
    assert len(notes) == 8 and all(e.recipient == "player_1" for e in notes)
    remote_actions = [e for e in envelopes if e.kind == "action" and e.sender == "player_1"]
    assert len(remote_actions) == 8


def test_outside_garbage_is_rejected_and_run_finishes(tmp_path: Path, broker: Mosquitto) -> None:
    mosquitto_pub, mosquitto_sub = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
    assert mosquitto_pub and mosquitto_sub, "mosquitto-clients is needed"
    scenario = _scenario(tmp_path, delay=0.3)
    first_observation = subprocess.Popen(
        [mosquitto_sub, "-h", broker.host, "-p", str(broker.port), "-C", "1", "-W", "60",
         "-t", "parley/r2/observation/#"], stdout=subprocess.DEVNULL)
    remote = _agent(scenario, "player_1", broker.url, "r2")
    summary = tmp_path / "summary.json"
    run = subprocess.Popen([*PARLEY, "--log-json", "run", str(scenario), "--bus", broker.url,
                            "--run-id", "r2", "--summary", str(summary), "--quiet"],
                           cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Once the first step is out, about 8 x 0.3 s of scripted thinking remain.
    assert first_observation.wait(timeout=60) == 0
    garbage = [("parley/r2/say/intruder/all", "not json at all"),
               ("parley/r2/action/player_1/runner", '{"kind": "action"}')]
    for topic, payload in garbage:
        subprocess.run([mosquitto_pub, "-h", broker.host, "-p", str(broker.port), "-q", "1",
                        "-t", topic, "-m", payload], check=True, timeout=10)
    _, stderr = run.communicate(timeout=90)
    assert run.returncode == 0, stderr
    assert remote.wait(timeout=30) == 0
    result = json.loads(summary.read_text())
    assert result["episodes"] == 2 and result["steps"] == 8
    assert result["messages"]["rejected"] >= 2
    rejected = [json.loads(line) for line in stderr.splitlines()
                if '"envelope_rejected"' in line]
    assert {r["topic"] for r in rejected} >= {t for t, _ in garbage}


def test_policy_traces_cross_processes(tmp_path: Path, broker: Mosquitto,
                                       tiny_model_dir: Path) -> None:
    text = (ROOT / "scenarios" / "referential_nested.yaml").read_text()
    listener = "  listener:\n    type: llm\n"
    text = text.replace(listener, listener + "    remote: true\n")
    scenario = tmp_path / "nested.yaml"
    scenario.write_text(text + f"model: {{name: {json.dumps(str(tiny_model_dir))}}}\n")
    remote = _agent(scenario, "listener", broker.url, "r3")
    recording = tmp_path / "run.jsonl"
    run = subprocess.run([*PARLEY, "run", str(scenario), "--bus", broker.url, "--run-id", "r3",
                          "--episodes", "2", "--quiet", "--record", str(recording)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert remote.wait(timeout=30) == 0
    envelopes = list(read_recording(recording))
    picks = [e for e in envelopes if e.kind == "action" and e.sender == "listener"]
    assert len(picks) == 2
    for pick in picks:
        assert pick.trace is not None and pick.trace.legal == [0, 1, 2]
        assert pick.trace.prompt_ids and len(pick.trace.logprobs) == 1
    said = [e for e in envelopes if e.kind == "say"]
    assert len(said) == 2 and all(e.trace and e.trace.token_ids for e in said)
