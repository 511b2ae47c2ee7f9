"""The PPO loop with the tiny model: who learns, what stays frozen, exact resume."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from runtime.scenario import load_scenario
from runtime.scenario_yaml import ScenarioError
from training.bench import bench_train_dtypes, render_train_dtypes
from training.config import PPOConfig, StopConfig
from training.learners import build_learners
from training.metrics import read_metrics
from training.rollout import collect_rollout
from training.train_scenario import TrainScenario, load_train_scenario
from training.trainer import (
    adapter_names,
    iteration_seed,
    scenario_for_training,
    set_learning_rates,
    train,
)
from training.trajectory import assemble, score
from training.update import ppo_update, prepare_batch

SCENARIO = """\
name: codes
env:
  game: referential
  options: {num_objects: 3, attributes: {colour: [red, blue, green]}}
model: {name: MODEL, device: cpu}
agents:
  speaker:
    type: llm
    options: {system_prompt: "You are {agent}.", turn_template: "{observation}",
              message_template: "Code word:", temperature: 1.5, max_message_tokens: 12,
              reask_limit: 0}
  listener:
    type: llm
    options: {system_prompt: "You are {agent}.", turn_template: "{inbox} {actions}",
              action_template: "Pick:", action_temperature: 1.5, epsilon: 0.1}
protocol:
  messages:
    Code:
      fields: {code: {type: enum, values: [zub, kep, mov]}}
  routes: [{from: speaker, to: listener, message: Code}]
training:
  episodes_per_iteration: 4
  concurrency: 2
  epochs: 1
  minibatches: 2
  actor_lr: 0.01
  critic_lr: 0.01
  lora_rank: 2
  lora_alpha: 4
"""
TIMING = {"wall_s", "rollout_s", "prepare_s", "update_s", "episodes_per_s",
          "update_tokens_per_s", "critic_s"}





def _scenario(tmp_path: Path, tiny_model_dir: Path, **training: Any) -> TrainScenario:
    path = tmp_path / "codes.yaml"
    path.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    return load_train_scenario(path, {f"training.{k}": v for k, v in training.items()})


def _adapter_weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {sub.name: load_file(sub / "adapter_model.safetensors")
            for sub in sorted(folder.iterdir()) if sub.is_dir()}


def test_one_update_trains_every_adapter_and_the_critic_and_nothing_else(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, gamma=1.0, gae_lambda=1.0,
                         critic_model="lora")
    adapters = adapter_names(scenario)
    learners = build_learners(scenario, sorted(set(adapters.values())))
    model, critic, tokenizer = learners.model, learners.critic, learners.engine.tokenizer
    assert critic is not None
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    critic_before = [p.detach().clone() for p in critic.parameters()]
    playing = scenario_for_training(scenario, adapters)
    rollout = asyncio.run(collect_rollout(playing, learners.engine, 4, 0, 2))
    trajectories = assemble(rollout.envelopes)
    assert {d.agent for d in trajectories.decisions} == {"speaker", "listener"}
    batch = prepare_batch(model, tokenizer, critic, trajectories, trajectories.decisions,
                          scenario.training)
    # Two value rows per agent-step; a message is judged against the speak-phase value
    # (which has not seen it), an action against the act-phase one (gamma = lambda = 1).
    assert batch.rows is not None and len(batch.rows.agents) == 2 * len(trajectories.steps)
    for decision, advantage in zip(batch.decisions, batch.advantages, strict=True):
        row = 2 * decision.step + (decision.kind == "action")
        expected = batch.returns[row] - batch.values[row]
        assert float(advantage) == pytest.approx(float(expected), abs=1e-6)
    losses = ppo_update(model, tokenizer, critic, learners.optimisers, batch, scenario.training,
                        torch.Generator().manual_seed(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    after = dict(model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert changed, "nothing learned"
    assert all("lora_" in n for n in changed), "a base weight moved"
    for adapter in ("speaker", "listener", "critic"):
        assert any(f".{adapter}." in n for n in changed), f"adapter {adapter} never learned"
    assert any(not torch.equal(a, b) for a, b in zip(critic.parameters(), critic_before,
                                                      strict=True))


def test_resume_reproduces_the_straight_run_exactly(tmp_path: Path,
                                                    tiny_model_dir: Path) -> None:
    # The rate moves too; the critic's adapter is saved and restored with the actors'.
    scenario = _scenario(tmp_path, tiny_model_dir, anneal_lr=True, critic_model="lora")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(scenario, straight, iterations=2, progress=False)
    train(scenario, resumed, iterations=1, progress=False)
    adapters = train(scenario, resumed, iterations=2, resume=True, progress=False)
    assert adapters == resumed / "adapters"
    one, two = _adapter_weights(straight / "adapters"), _adapter_weights(adapters)
    assert one.keys() == two.keys() == {"listener", "speaker"}
    for name in one:
        assert all(torch.equal(one[name][key], two[name][key]) for key in one[name])
    with pytest.raises(FileExistsError, match="earlier run"):
        train(scenario, straight, iterations=3, progress=False)  # not resuming: refused
    rows = [[{k: repr(v) for k, v in row.items() if k not in TIMING}  # repr: nan == nan
             for row in read_metrics(run)] for run in (straight, resumed)]
    assert len(rows[0]) == 2 and rows[0] == rows[1]


def test_a_run_stops_once_its_success_target_holds_for_the_window(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    full = tmp_path / "full"
    train(_scenario(tmp_path, tiny_model_dir, critic="none"), full, iterations=3, progress=False)
    rates = [row["success_rate"] for row in read_metrics(full)]
    target = (rates[0] + rates[1]) / 2  # held by iterations 0-1 of the same seeded run
    out = tmp_path / "stopped"
    scenario = _scenario(tmp_path, tiny_model_dir, critic="none",
                         stop={"success": target, "window": 2})
    adapters = train(scenario, out, iterations=3, progress=False)
    assert [row["success_rate"] for row in read_metrics(out)] == rates[:2]
    assert (out / "checkpoints" / "iter_0002").is_dir() and (adapters / "speaker").is_dir()


def test_the_success_target_needs_a_full_window() -> None:
    stop = StopConfig(success=0.9, window=3)
    assert not stop.reached([1.0, 1.0])
    assert stop.reached([0.2, 0.9, 0.9, 0.9]) and not stop.reached([0.9, 0.9, 0.8])


def test_shared_policy_trains_one_adapter_that_the_run_can_play(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, shared_policy=True, critic="none")
    out = tmp_path / "run"
    adapters = train(scenario, out, iterations=1, progress=False)
    weights = _adapter_weights(adapters)["shared"]
    assert any(float(w.abs().sum()) > 0 for key, w in weights.items() if "lora_B" in key)
    played = load_scenario(out / "scenario.yaml")
    assert {a.options["adapter"] for a in played.agents.values()} == {"shared"}
    (row,) = read_metrics(out)
    assert "value_loss" not in row and "explained_variance" not in row and "kl" in row
    assert row["message_chars"] > 0  # the speaker's messages, their mean length
    assert row["signalling_bits"] >= 0.0 and row["listening_bits"] >= 0.0
    state = torch.load(out / "checkpoints" / "iter_0001" / "state.pt", weights_only=True)
    assert "critic" not in state and state["iteration"] == 1


def test_resume_needs_a_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_scenario(tmp_path, tiny_model_dir), tmp_path / "none", resume=True,
              progress=False)


def test_a_scenario_without_llm_agents_has_nothing_to_train(tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    data = yaml.safe_load(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    for spec in data["agents"].values():
        spec.update(type="random", options={})
    with pytest.raises(ValueError, match="no llm agents"):
        adapter_names(TrainScenario.model_validate(data))


def test_training_section_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: bad
        env: {game: referential}
        agents: {speaker: {type: random}, listener: {type: random}}
        training:
          epochs: 0
        """))
    with pytest.raises(ScenarioError, match=r"bad.yaml:5: training.epochs"):
        load_train_scenario(path)


def test_iteration_seeds_differ_across_iterations_and_seeds() -> None:
    assert len({iteration_seed(0, i) for i in range(50)} | {iteration_seed(1, 0)}) == 51


def test_iteration_seeds_do_not_depend_on_python_hash_randomisation() -> None:
    program = "from training.trainer import iteration_seed; print(iteration_seed(0, 3))"
    seen = {subprocess.run([sys.executable, "-c", program], env={**os.environ,
                                                                  "PYTHONHASHSEED": hash_seed},
                           capture_output=True, text=True, check=True).stdout.strip()
            for hash_seed in ("1", "2")}
    assert seen == {str(iteration_seed(0, 3))}


@pytest.mark.parametrize(("anneal", "fractions"), [(True, [1.0, 0.75, 0.5, 0.25]),
                                                   (False, [1.0, 1.0, 1.0, 1.0])])
def test_learning_rates_anneal_linearly_to_zero_over_the_run(anneal: bool,
                                                             fractions: list[float]) -> None:
    config = PPOConfig(actor_lr=0.004, critic_lr=0.002, anneal_lr=anneal)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimisers = {"actor": torch.optim.Adam([parameter], lr=1.0),
                  "critic": torch.optim.Adam([parameter], lr=1.0)}
    for iteration, fraction in enumerate(fractions):
        set_learning_rates(optimisers, config, iteration, total=4)
        assert optimisers["actor"].param_groups[0]["lr"] == pytest.approx(0.004 * fraction)
        assert optimisers["critic"].param_groups[0]["lr"] == pytest.approx(0.002 * fraction)


def test_a_learning_rate_scale_slows_only_the_named_adapter(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, actor_lr=0.004, anneal_lr=True,
                         actor_lr_scale={"listener": 0.25})
    learners = build_learners(scenario, ["listener", "speaker"])
    set_learning_rates(learners.optimisers, scenario.training, iteration=2, total=4)
    listener, speaker = learners.optimisers["actor"].param_groups
    assert (listener["lr"], speaker["lr"]) == pytest.approx((0.0005, 0.002))
    names = {id(p): n for n, p in learners.model.named_parameters()}
    assert all(".listener." in names[id(p)] for p in listener["params"])
    assert all(".speaker." in names[id(p)] for p in speaker["params"])
    with pytest.raises(ValueError, match="actor_lr_scale: no adapter talker"):
        build_learners(_scenario(tmp_path, tiny_model_dir, actor_lr_scale={"talker": 2.0}),
                       ["listener", "speaker"])


def test_bench_measures_ppo_against_the_bare_loop_in_each_precision(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "codes.yaml"
    path.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    results = bench_train_dtypes(["float32", "bfloat16"], scenario=path, episodes=2, epochs=1,
                                 repeats=1)
    assert [r["dtype"] for r in results] == ["float32", "bfloat16"]
    assert all(r["ceiling_gflops"] > 0 and r["bare_of_ceiling"] > 0 for r in results)
    assert "PPO update bfloat16 = " in render_train_dtypes(results)
    result = results[0]
    assert result["decisions"] >= 2 and result["tokens"] > 0
    assert result["ppo_tokens_per_s"] > 0 and result["bare_tokens_per_s"] > 0
    assert 0 < result["critic_s"] < result["ppo_update_s"]
    policy_s = result["ppo_update_s"] - result["critic_s"]
    assert result["ratio"] == pytest.approx(result["bare_s"] / policy_s, rel=0.05)
    assert result["ratio_with_critic"] == pytest.approx(
        result["bare_s"] / result["ppo_update_s"], rel=0.05)
    text = render_train_dtypes(results)
    assert "of bare" in text and "critic: central (frozen)" in text


def test_an_update_moves_log_probs_the_way_of_the_advantage(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, entropy_coef=0.0, kl_coef=0.0, epochs=3,
                         minibatches=1, actor_lr=0.003)
    adapters = adapter_names(scenario)
    learners = build_learners(scenario, sorted(set(adapters.values())))
    model, tokenizer = learners.model, learners.engine.tokenizer
    rollout = asyncio.run(collect_rollout(scenario_for_training(scenario, adapters),
                                          learners.engine, 4, 0, 2))
    trajectories = assemble(rollout.envelopes)
    batch = prepare_batch(model, tokenizer, learners.critic, trajectories,
                          trajectories.decisions, scenario.training)
    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(len(batch.decisions))])
    batch = dataclasses.replace(batch, advantages=sign)
    ppo_update(model, tokenizer, learners.critic, learners.optimisers, batch, scenario.training,
               torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = torch.stack([score(model, d, tokenizer, d.trace.adapter)[0]
                             for d in batch.decisions])
    moved = (after - batch.old_logprobs) * sign.double()
    assert float(moved.mean()) > 0 and int((moved > 0).sum()) >= 0.75 * len(moved)
