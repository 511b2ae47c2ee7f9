"""Rollouts on Ray (`training.workers: N`, `pip install 'parley[ray]'`).

Each worker, a Ray actor, loads the scenario's model once and attaches the actors'
adapters under their names. Every iteration the learner puts its adapter weights in
Ray's object store once; each worker copies them into its adapters and plays the
episode blocks it was given with an engine of its own, then sends back every envelope
as JSON (payloads are typed by the scenario's schemas: rebuilt from the scenario on the
learner's side, never pickled). A block keeps the run id and seeds the one-process
rollout gives it (`runtime.play.PlaySettings.blocks`) and trajectories are ordered by
(run, episode, step), not by arrival, so with the same seeds the trajectories are the
one-process rollout's.

Ray is imported only here, and only when `workers` is set: without the extra nothing
changes. `--ray-address` joins a running cluster; else a local one is started.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from agents.base import ModelUsage
from agents.llm.compute import on_torch_thread
from agents.llm.engine import InferenceEngine, run_on
from agents.llm.loading import load_model
from protocols import Envelope
from runtime.bus import BusStats
from runtime.play import episode_blocks
from runtime.summary import Incidents, RunSummary
from training.learners import Learners, fresh_adapters
from training.rollout import Rollout, collect_rollout
from training.train_scenario import TrainScenario

log = structlog.get_logger()

Weights = dict[str, dict[str, torch.Tensor]]


class RolloutWorker:
    """One Ray actor: the model with the actors' adapters, and an engine to play with."""

    def __init__(self, scenario: dict[str, Any], adapters: list[str]) -> None:
        config = TrainScenario.model_validate(scenario)
        training = config.training
        if training.threads is not None:
            torch.set_num_threads(training.threads)
        model, tokenizer = load_model(config.model)
        self.model = fresh_adapters(model, adapters, training)
        self.engine = InferenceEngine(self.model, tokenizer, seed=training.seed)

    def rollout(self, scenario: dict[str, Any], weights: Weights, episodes: int, seed: int,
                concurrency: int, blocks: list[int]) -> tuple[list[bytes], str]:
        """Play `blocks` with `weights` in the adapters: envelopes and summary, as JSON."""
        for name, state in weights.items():
            on_torch_thread(set_peft_model_state_dict, self.model, state, adapter_name=name)
        playing = TrainScenario.model_validate(scenario)
        rollout = run_on(self.engine, collect_rollout(playing, self.engine, episodes, seed,
                                                      concurrency, blocks=blocks))
        return [e.to_json() for e in rollout.envelopes], rollout.summary.model_dump_json()


class RayRollouts:
    """The learner's side: `workers` Ray actors and the blocks each plays."""

    def __init__(self, scenario: TrainScenario, adapters: list[str], workers: int,
                 address: str | None = None) -> None:
        import ray

        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        actor = ray.remote(RolloutWorker)
        payload = scenario.model_dump(mode="json")
        self.workers: list[Any] = [actor.remote(payload, adapters) for _ in range(workers)]
        log.info("ray_workers_started", workers=workers, address=address or "local")

    def collect(self, playing: TrainScenario, learners: Learners, episodes: int, seed: int,
                concurrency: int) -> Rollout:
        """Play an iteration's episodes on the workers with the actors' current adapters."""
        import ray

        began = time.perf_counter()
        model = learners.model
        weights = ray.put({name: {key: value.detach().cpu().clone() for key, value in
                                  get_peft_model_state_dict(model, adapter_name=name).items()}
                           for name in learners.actors})
        blocks = list(range(len(episode_blocks(episodes, concurrency))))
        shares = [blocks[i::len(self.workers)] for i in range(len(self.workers))]
        payload = playing.model_dump(mode="json")
        answers = ray.get([worker.rollout.remote(payload, weights, episodes, seed, concurrency,
                                                 share)
                           for worker, share in zip(self.workers, shares, strict=True) if share])
        return _merged(playing, answers, time.perf_counter() - began)

    def close(self) -> None:
        """Stop the workers, and the local cluster if this started it."""
        import ray

        for worker in self.workers:
            ray.kill(worker)
        if self._started:
            ray.shutdown()


def _merged(playing: TrainScenario, answers: list[tuple[list[bytes], str]],
            wall_s: float) -> Rollout:
    """One rollout from the workers' envelopes and summaries."""
    context = {"registry": playing.registry()}
    envelopes = [Envelope.model_validate_json(raw, context=context)
                 for raws, _ in answers for raw in raws]
    summaries = [RunSummary.model_validate_json(summary) for _, summary in answers]
    usage = [s.llm for s in summaries if s.llm is not None]
    results = sorted((r for s in summaries for r in s.per_episode), key=lambda r: r.episode)
    summary = RunSummary.of(
        playing.name, list(playing.agents), results, wall_s=wall_s,
        messages=BusStats.total([s.messages for s in summaries]),
        incidents=Incidents.total([s.incidents for s in summaries]),
        llm=ModelUsage.total(usage) if usage else None)
    return Rollout(envelopes, summary)
