"""Training with the listener in its own `parley agent --training` process, over a real
Mosquitto broker: it plays with the adapters handed over each iteration, and training
learns exactly what training in one process learns."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agents.llm.adapters import AdapterDigestError, adapters_digest, refresh_adapters
from protocols import Action
from runtime.mosquitto import Mosquitto
from runtime.recorder import read_recording
from training.learners import build_learners
from training.remote import RemoteRollouts
from training.rollout import collect_rollout
from training.train_scenario import TrainScenario, load_train_scenario
from training.trainer import adapter_names, scenario_for_training, train
from training.trajectory import assemble

from .test_ray_rollout import _played, assert_learned_the_same, trained_looking_learners
from .test_trainer import SCENARIO

ROOT = Path(__file__).parents[2]
LISTENER = "  listener:\n    type: llm\n"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto


def _scenario(tmp_path: Path, tiny_model_dir: Path, remote: bool) -> TrainScenario:
    """The trainer tests' code game (two episodes at once), the listener remote or not."""
    text = SCENARIO.replace("MODEL", str(tiny_model_dir))
    if remote:
        text = text.replace(LISTENER, LISTENER + "    remote: true\n")
    path = tmp_path / ("remote.yaml" if remote else "local.yaml")
    path.write_text(text)
    return load_train_scenario(path, {"training.threads": 1})


def _follower(scenario: TrainScenario, tmp_path: Path, url: str) -> subprocess.Popen[str]:
    """`parley agent --training` serving the listener, logging JSON to stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "--log-json", "--log-level", "info", "agent",
         str(tmp_path / "remote.yaml"), "--agent", "listener", "--bus", url, "--training"],
        cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _events(stderr: str, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


@pytest.mark.mqtt
def test_remote_listener_plays_the_one_process_trajectories_with_the_handed_adapters(
        tmp_path: Path, tiny_model_dir: Path, broker: Mosquitto) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, remote=True)
    adapters = adapter_names(scenario)
    learners = trained_looking_learners(scenario)
    follower = _follower(scenario, tmp_path, broker.url)
    source = RemoteRollouts(scenario, adapters, broker.url, tmp_path / "out")
    try:
        there = source.collect(scenario_for_training(scenario, adapters), learners, 4, 7, 2)
    finally:
        source.close()
    _, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 0, stderr
    local = _scenario(tmp_path, tiny_model_dir, remote=False)
    here = asyncio.run(collect_rollout(scenario_for_training(local, adapters), learners.engine,
                                       4, 7, 2))
    assert there.summary.episodes == 4
    assert _played(assemble(there.envelopes)) == _played(assemble(here.envelopes))
    tokens = [d.trace.token_ids for d in assemble(there.envelopes).decisions]
    assert tokens == [d.trace.token_ids for d in assemble(here.envelopes).decisions]
    assert any(d.agent == "listener" for d in assemble(there.envelopes).decisions)


@pytest.mark.mqtt
def test_two_iterations_with_a_remote_listener_learn_what_one_process_learns(
        tmp_path: Path, tiny_model_dir: Path, broker: Mosquitto) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, remote=True)
    follower = _follower(scenario, tmp_path, broker.url)
    train(scenario, tmp_path / "remote", iterations=2, progress=False, bus=broker.url)
    _, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 0, stderr
    loaded = _events(stderr, "handed_adapters_loaded")
    assert len(loaded) == 2 and loaded[0]["digest"] != loaded[1]["digest"]  # changed there
    train(_scenario(tmp_path, tiny_model_dir, remote=False), tmp_path / "alone", iterations=2,
          progress=False)
    assert_learned_the_same(tmp_path / "remote", tmp_path / "alone")


@pytest.mark.mqtt
def test_a_remote_agent_that_does_not_learn_plays_along_unchanged(
        tmp_path: Path, tiny_model_dir: Path, broker: Mosquitto) -> None:
    data = yaml.safe_load(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    data["agents"]["listener"] = {"type": "scripted", "remote": True, "options": {"actions": [0]}}
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(data))
    scenario = load_train_scenario(tmp_path / "remote.yaml", {"training.threads": 1})
    follower = _follower(scenario, tmp_path, broker.url)
    adapters = train(scenario, tmp_path / "out", iterations=1, progress=False, bus=broker.url)
    _, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 0, stderr
    assert _events(stderr, "handed_adapters_loaded") == []  # nothing to hand a scripted agent
    assert [event["rollouts"] for event in _events(stderr, "trainer_done")] == [1]
    sampled = read_recording(tmp_path / "out" / "episodes" / "iteration_0000.jsonl")
    picks = [e.payload for e in sampled if e.kind == "action" and e.sender == "listener"]
    assert picks == [Action(action=0)] * 2  # its script, in both sampled episodes
    assert sorted(p.name for p in adapters.iterdir() if p.is_dir()) == ["speaker"]


def test_remote_agents_without_a_broker_are_refused_before_training(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, remote=True)
    with pytest.raises(ValueError, match=r"remote agents \(listener\) are trained over a broker"):
        train(scenario, tmp_path / "out", iterations=1, progress=False)


def test_adapters_that_do_not_match_their_digest_are_refused(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, remote=False)
    learners = build_learners(scenario, ["listener"])
    learners.model.save_pretrained(str(tmp_path / "handed"), selected_adapters=["listener"])
    digest = adapters_digest(tmp_path / "handed", ["listener"])
    weights = tmp_path / "handed" / "listener" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\xff" * 8)  # a copy gone wrong
    with pytest.raises(AdapterDigestError, match=r"handed: sha256 \w{12}, expected"):
        refresh_adapters(learners.engine, tmp_path / "handed", ["listener"], digest)
