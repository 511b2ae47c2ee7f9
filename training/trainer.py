"""CTDE PPO for LLM agents: the training loop, in the order it runs (as CleanRL's ppo.py).

One iteration:

1. Roll out `episodes_per_iteration` episodes with the current LoRA adapters
   (each learning agent plays its own adapter, or all share one).
2. Assemble trajectories from the envelopes: agent-steps, joint steps, decisions.
3. Critic: reads every agent-step's text at both decision points (speak, act)
   and gives each a value (its own LoRA adapter and value head; see critic.py).
4. GAE per agent stream; each decision gets the advantage of its agent-step.
5. Old log-probs (the sampled distribution) and reference log-probs (adapters
   off), without gradients.
6. PPO epochs over minibatches: new log-probs with gradients under each
   decision's adapter, the policy loss and a clipped step of the actors' adapters;
   the value loss and a clipped step of the critic.
7. Metrics, checkpoint.

Steps 3-5 are `update.prepare_batch`, step 6 `update.ppo_update`. With
`critic: none` there is no value head: advantages are discounted returns minus
the batch's mean return (REINFORCE with a baseline). With `kl_coef: 0` the
reference pass is skipped (and no KL is reported). Setting `threads` changes
torch's thread count for the whole process.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import structlog
import torch
import yaml

from agents.llm.adapters import replace_adapters
from agents.llm.compute import on_torch_thread
from agents.llm.engine import InferenceEngine, run_on
from runtime.play import agent_seed
from training.checkpoint import ADAPTERS, latest_checkpoint, restore_checkpoint, save_checkpoint
from training.config import PPOConfig
from training.learners import Learners, build_learners
from training.metrics import MetricsWriter, iteration_metrics, progress_bar
from training.rollout import Rollout
from training.run_view import record_sampled_episodes
from training.shaping import Shaper, shape
from training.shaping import record as record_shaping
from training.social import latest_summaries, refresh, with_summaries
from training.sources import RolloutSource, check_placement, rollout_source
from training.train_scenario import TrainScenario
from training.trajectory import Trajectories, assemble
from training.update import ppo_update, prepare_batch

log = structlog.get_logger()

SHARED_ADAPTER = "shared"
TRAINING_TIMEOUT_S = 3600.0


def adapter_names(scenario: TrainScenario) -> dict[str, str]:
    """Learning agent -> its adapter: every `llm` agent, its own name or `shared`."""
    learners = [name for name, spec in scenario.agents.items() if spec.type == "llm"]
    if not learners:
        raise ValueError(f"scenario {scenario.name!r} has no llm agents to train")
    return {name: SHARED_ADAPTER if scenario.training.shared_policy else name
            for name in learners}


def scenario_for_training(scenario: TrainScenario, adapters: dict[str, str]) -> TrainScenario:
    """The scenario with each learning agent's `adapter` option naming its adapter.

    The speak and act timeouts are raised to at least `TRAINING_TIMEOUT_S`: in a
    rollout a late agent means a busy machine, not a fault, and the runner's
    default action would not be the policy's sample.
    """
    agents = {name: spec.model_copy(update={"options": {**spec.options,
                                                         "adapter": adapters[name]}})
              if name in adapters else spec for name, spec in scenario.agents.items()}
    timing = scenario.runtime
    runtime = timing.model_copy(update={
        "speak_timeout_s": max(timing.speak_timeout_s, TRAINING_TIMEOUT_S),
        "action_timeout_s": max(timing.action_timeout_s, TRAINING_TIMEOUT_S)})
    # Training starts from fresh adapters, whatever the scenario's own `adapters:` are.
    return scenario.model_copy(update={"agents": agents, "runtime": runtime, "adapters": None})


def set_learning_rates(optimisers: dict[str, torch.optim.Optimizer], config: PPOConfig,
                       iteration: int, total: int) -> None:
    """The iteration's learning rates: the configured ones, or with `anneal_lr` the
    configured ones times (1 - iteration / total), a function of the iteration alone so
    that a resumed run steps exactly as a straight one."""
    fraction = 1.0 - iteration / total if config.anneal_lr else 1.0
    base = {"actor": config.actor_lr, "critic": config.critic_lr}
    for name, optimiser in optimisers.items():
        for group in optimiser.param_groups:
            group["lr"] = base[name] * fraction * group.get("scale", 1.0)


def iteration_seed(seed: int, iteration: int) -> int:
    """The rollout seed of an iteration: a function of (base seed, iteration) only."""
    return agent_seed(seed, f"iteration-{iteration}")


def train(scenario: TrainScenario, out: Path, iterations: int | None = None,
          resume: bool = False, progress: bool = True, ray_address: str | None = None,
          bus: str | None = None, run_id: str | None = None) -> Path:
    """Train the scenario's LLM agents with CTDE PPO; returns the final adapters folder.

    Args:
        scenario: the scenario, its `training:` settings validated.
        out: the run folder: metrics.csv, tensorboard/, checkpoints/, adapters/,
            scenario.yaml (the scenario with the agents' adapter options set, for
            `parley run OUT/scenario.yaml --adapters OUT/adapters`).
        iterations: total iterations of the run (default: the scenario's).
        resume: continue from the latest checkpoint in `out`.
        progress: show a progress bar with live metrics.
        ray_address: the Ray cluster the rollout workers join (`training.workers`); None
            starts a local one.
        bus: a broker (`mqtt://HOST:PORT`) for scenarios with remote agents, whose
            `parley agent --training` processes play each rollout (training/remote.py).
        run_id: the run id the trainer meets its remote agents on (default: the name).

    With `training.stop` the run ends once the training success holds its target
    (counted over this invocation's iterations: a resumed run starts counting again).
    """
    config = scenario.training
    total = iterations if iterations is not None else config.iterations
    adapters = adapter_names(scenario)
    check_placement(scenario, bus)
    learners, start, playing, shaper = _set_up(scenario, out, resume, adapters)
    successes: list[float] = []
    with MetricsWriter(out, start_iteration=start) as writer, \
            progress_bar(progress, total, start) as advance, \
            rollout_source(scenario, adapters, out, ray_address, bus, run_id) as source:
        for iteration in range(start, total):
            began = time.perf_counter()
            set_learning_rates(learners.optimisers, config, iteration, total)
            rollout, trajectories, playing, extra = _experience(
                learners, source, scenario, playing, shaper, sorted(adapters), iteration, out)
            metrics = _learn(learners, rollout, trajectories, set(adapters.values()), config,
                             iteration) | extra
            metrics["wall_s"] = time.perf_counter() - began
            successes.append(metrics.get("success_rate", math.nan))
            stopping = config.stop is not None and config.stop.reached(successes)
            if (iteration + 1) % config.checkpoint_every == 0 or iteration + 1 == total or stopping:
                save_checkpoint(out, iteration + 1, learners.model, learners.critic,
                                learners.optimisers, metrics, config.keep_checkpoints)
            writer.write(iteration, metrics)
            log.info("iteration_done", iteration=iteration, **{k: round(v, 4) for k, v in
                                                              metrics.items()})
            advance(metrics)
            if stopping:
                log.info("target_success_held", iteration=iteration)
                break
    # OUT/adapters: the actors' adapters (not the critic's), replaced as a whole.
    return replace_adapters(learners.model, out / ADAPTERS, learners.actors)


def _set_up(scenario: TrainScenario, out: Path, resume: bool, adapters: dict[str, str]
            ) -> tuple[Learners, int, TrainScenario, Shaper | None]:
    """The learners (a checkpoint's when resuming), the first iteration, the scenario the
    rollouts play (written to OUT/scenario.yaml) and the shaper, if any."""
    config = scenario.training
    checkpoint = _checkpoint_to_resume(out, resume)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    learners = build_learners(scenario, sorted(set(adapters.values())), checkpoint)
    start = (restore_checkpoint(checkpoint, learners.critic, learners.optimisers)
             if checkpoint else 0)
    playing = with_summaries(scenario_for_training(scenario, adapters), scenario,
                             latest_summaries(out) if resume else {})
    _write_scenario(out, playing)
    shaper = (run_on(learners.engine, Shaper.create(learners.engine, config.shaping))
              if config.shaping else None)
    return learners, start, playing, shaper


def _checkpoint_to_resume(out: Path, resume: bool) -> Path | None:
    """The latest checkpoint when resuming; refuses to resume nothing or to overwrite a run."""
    checkpoint = latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    if not resume and latest_checkpoint(out) is not None:
        raise FileExistsError(f"{out} holds an earlier run: resume it or choose another folder")
    return checkpoint


def _experience(learners: Learners, source: RolloutSource, scenario: TrainScenario,
                playing: TrainScenario, shaper: Shaper | None, learning: list[str],
                iteration: int, out: Path
                ) -> tuple[Rollout, Trajectories, TrainScenario, dict[str, float]]:
    """Steps 1-2: roll out with the current adapters and assemble the trajectories; their
    rewards gain the shaping bonus (`training.shaping`), and the social summaries that
    the next rollout's prompts carry are refreshed (`training.social`). Returns the
    scenario to play next and the metrics of both."""
    config, engine = scenario.training, learners.engine
    rollout = source.collect(playing, learners, config.episodes_per_iteration,
                             iteration_seed(config.seed, iteration), config.concurrency)
    record_sampled_episodes(out, iteration, rollout.envelopes)
    trajectories = assemble(rollout.envelopes)
    extra: dict[str, float] = {}
    if shaper is not None:
        shaped = run_on(engine, shape(shaper, trajectories, config.gamma))
        record_shaping(out, shaper, shaped, iteration)
        trajectories, extra = shaped.trajectories, shaped.metrics()
    if config.social:
        socialised = time.perf_counter()
        if iteration % config.social.every == 0:
            playing = _socialise(engine, trajectories, playing, scenario, learning, iteration,
                                 out)
        extra["social_s"] = time.perf_counter() - socialised
    return rollout, trajectories, playing, extra


def _learn(learners: Learners, rollout: Rollout, trajectories: Trajectories,
           adapters: set[str], config: PPOConfig, iteration: int) -> dict[str, float]:
    """Steps 3-7 of an iteration: values, advantages and old log-probs, the PPO epochs,
    and the iteration's metrics with the update's timings."""
    model, tokenizer, critic = learners.model, learners.engine.tokenizer, learners.critic
    decisions = [d for d in trajectories.decisions if d.trace.adapter in adapters]
    prepared = time.perf_counter()
    batch = on_torch_thread(prepare_batch, model, tokenizer, critic, trajectories, decisions,
                            config)
    updated = time.perf_counter()
    generator = torch.Generator().manual_seed(iteration_seed(config.seed, iteration) + 1)
    losses = on_torch_thread(ppo_update, model, tokenizer, critic, learners.optimisers, batch,
                             config, generator)
    metrics = iteration_metrics(rollout, trajectories, batch, losses)
    update_s = time.perf_counter() - updated
    return metrics | {"prepare_s": updated - prepared, "update_s": update_s,
                      "update_tokens_per_s": config.epochs * sum(d.tokens for d in decisions)
                      / update_s}


def _socialise(engine: InferenceEngine, trajectories: Trajectories, playing: TrainScenario,
               scenario: TrainScenario, learning: list[str], iteration: int,
               out: Path) -> TrainScenario:
    """`playing` with each learning agent's new summary of what the others did
    (`training.social`); OUT/scenario.yaml follows, so an evaluation reads them too."""
    summaries = run_on(engine, refresh(engine, trajectories, learning, iteration, out))
    playing = with_summaries(playing, scenario, summaries)
    _write_scenario(out, playing)
    return playing


def _write_scenario(out: Path, scenario: TrainScenario) -> None:
    """OUT/scenario.yaml: the scenario as trained, each agent naming its adapter."""
    out.mkdir(parents=True, exist_ok=True)
    data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    (out / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
