"""What learns in a training run: the model's actor adapters, the critic, their optimisers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel

from agents.llm.adapters import (
    adapter_params,
    attach_adapters,
    enable_adapter_grads,
    load_adapters,
)
from agents.llm.engine import InferenceEngine
from agents.llm.loading import load_model
from training.checkpoint import ADAPTERS
from training.config import PPOConfig
from training.critic import Critic
from training.hidden import hidden_size
from training.train_scenario import TrainScenario


@dataclass(frozen=True)
class Learners:
    """What learns: the engine's model with its adapters, the critic, their optimisers."""

    engine: InferenceEngine
    model: PeftModel
    critic: Critic | None
    optimisers: dict[str, torch.optim.Optimizer]
    actors: list[str]


def build_learners(scenario: TrainScenario, adapters: list[str],
                   checkpoint: Path | None = None) -> Learners:
    """A fresh engine whose model carries the actors' `adapters` and the critic's (fresh,
    or a checkpoint's), the critic (None for `critic: none`) and Adam optimisers: `actor`
    over the actors' LoRA parameters (a group per adapter, for `actor_lr_scale`),
    `critic` over the critic's heads and adapters.
    Deterministic in `scenario.training.seed`."""
    config = scenario.training
    engine = InferenceEngine(*load_model(scenario.model), seed=config.seed)
    torch.manual_seed(config.seed)
    critic = None
    if config.uses_critic:
        pad = engine.tokenizer.pad_token_id
        critic = Critic(hidden_size(engine.model), config, list(scenario.agents),
                        int(pad) if pad is not None else 0)
    critic_adapters = critic.adapters if critic is not None else []
    if clash := sorted(set(critic_adapters) & set(adapters)):
        raise ValueError(f"adapter name {', '.join(clash)} is the critic's: rename that agent "
                         "or use training.critic_model: frozen")
    model = _with_adapters(engine, adapters, critic_adapters, config, checkpoint)
    if unknown := sorted(set(config.actor_lr_scale) - set(adapters)):
        raise ValueError(f"training.actor_lr_scale: no adapter {', '.join(unknown)}; the "
                         f"adapters are {', '.join(sorted(adapters))}")
    groups = [{"params": adapter_params(model, [name]),
               "scale": config.actor_lr_scale.get(name, 1.0)} for name in sorted(adapters)]
    optimisers: dict[str, torch.optim.Optimizer] = {
        "actor": torch.optim.Adam(groups, lr=config.actor_lr, eps=1e-5)}
    if critic is not None:
        params = [*critic.parameters(), *adapter_params(model, critic_adapters)]
        optimisers["critic"] = torch.optim.Adam(params, lr=config.critic_lr, eps=1e-5)
    return Learners(engine, model, critic, optimisers, adapters)


def _with_adapters(engine: InferenceEngine, actors: list[str], critics: list[str],
                   config: PPOConfig, checkpoint: Path | None) -> PeftModel:
    """Attach fresh adapters (or a checkpoint's) to the engine's model, all trainable."""
    names = [*actors, *critics]
    torch.manual_seed(config.seed)  # LoRA A's initialisation
    if checkpoint is None:
        model = fresh_adapters(engine.model, names, config)
    else:
        model = load_adapters(engine.model, checkpoint / ADAPTERS, is_trainable=True)
    enable_adapter_grads(model, names)
    model.eval()  # no dropout: the update's forward is the rollout's forward
    engine.model = model
    return model


def fresh_adapters(model: torch.nn.Module, names: list[str], config: PPOConfig) -> PeftModel:
    """Fresh LoRA adapters named `names`, shaped as `config` says (rank, alpha, layers,
    target modules): the learner's, and the same shapes in each Ray rollout worker."""
    return attach_adapters(model, names, rank=config.lora_rank, alpha=int(config.lora_alpha),
                           top_layers=config.lora_layers, target_modules=config.lora_targets)
