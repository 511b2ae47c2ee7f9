"""CTDE PPO for LLM agents: GAE, the PPO loss, value normalisation, statistics."""

from training.config import CriticKind, PPOConfig
from training.gae import compute_gae
from training.normalise import ValueNormaliser
from training.ppo_loss import PPOLossOutput, ppo_loss
from training.stats import mean_ci95, proportion_ci95

__all__ = [
    "CriticKind",
    "PPOConfig",
    "PPOLossOutput",
    "ValueNormaliser",
    "compute_gae",
    "mean_ci95",
    "ppo_loss",
    "proportion_ci95",
]
