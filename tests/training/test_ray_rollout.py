"""Rollouts on Ray: workers play the one-process rollout's episodes, and training with
them learns exactly what training in one process learns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
from safetensors.torch import load_file

from runtime.scenario_yaml import ScenarioError
from training.learners import Learners, build_learners
from training.metrics import read_metrics
from training.ray_rollout import RayRollouts
from training.rollout import collect_rollout
from training.train_scenario import TrainScenario
from training.trainer import adapter_names, scenario_for_training, train
from training.trajectory import Trajectories, assemble

from .test_trainer import _scenario as codes_scenario


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _scenario(tmp_path: Path, tiny_model_dir: Path, **training: Any) -> TrainScenario:
    """The trainer tests' code game, 6 episodes in 3 blocks (so two workers split them)."""
    settings = {"episodes_per_iteration": 6, "concurrency": 3, "threads": 1, **training}
    return codes_scenario(tmp_path, tiny_model_dir, **settings)


def _played(trajectories: Trajectories) -> list[tuple[Any, ...]]:
    """Every agent-step as data: who, where, what it saw, said, did and earned."""
    return [(s.agent, s.run, s.episode, s.step, s.observation.model_dump_json(),
             tuple(e.payload_json() for e in s.said),
             s.action.payload_json() if s.action else None, s.reward)
            for s in trajectories.steps]


def trained_looking_learners(scenario: TrainScenario) -> Learners:
    """The scenario's learners with LoRA B drawn away from its zero start (seed 1)."""
    learners = build_learners(scenario, sorted(set(adapter_names(scenario).values())))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in learners.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return learners


def assert_learned_the_same(run: Path, other: Path) -> None:
    """Two training runs with the same returns in every iteration and the same adapters."""
    assert [r["return_mean"] for r in read_metrics(run)] == \
        [r["return_mean"] for r in read_metrics(other)]
    for name in ("listener", "speaker"):
        mine = load_file(run / "adapters" / name / "adapter_model.safetensors")
        theirs = load_file(other / "adapters" / name / "adapter_model.safetensors")
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key])


def test_ray_workers_play_the_one_process_trajectories_with_the_learners_weights(
        ray_cluster: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir)
    adapters = adapter_names(scenario)
    learners = trained_looking_learners(scenario)
    playing = scenario_for_training(scenario, adapters)
    here = asyncio.run(collect_rollout(playing, learners.engine, 6, 7, 3))
    workers = RayRollouts(scenario, learners.actors, workers=2)
    try:
        there = workers.collect(playing, learners, 6, 7, 3)
    finally:
        workers.close()
    assert there.summary.episodes == 6 and len(there.envelopes) == len(here.envelopes)
    assert _played(assemble(there.envelopes)) == _played(assemble(here.envelopes))
    tokens = [d.trace.token_ids for d in assemble(there.envelopes).decisions]
    assert tokens == [d.trace.token_ids for d in assemble(here.envelopes).decisions]


def test_two_iterations_on_two_ray_workers_learn_what_one_process_learns(
        ray_cluster: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    for workers in (0, 2):
        scenario = _scenario(tmp_path, tiny_model_dir, workers=workers)
        train(scenario, tmp_path / f"workers{workers}", iterations=2, progress=False)
    assert_learned_the_same(tmp_path / "workers2", tmp_path / "workers0")


def test_workers_without_ray_installed_is_one_error_naming_the_line(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "ray" else found(name, *rest))
    with pytest.raises(ScenarioError, match=r"codes.yaml:\d+: training.workers: .*"
                                            r"pip install 'parley\[ray\]'"):
        _scenario(tmp_path, tiny_model_dir, workers=2)
