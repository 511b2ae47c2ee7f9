"""PPOConfig: every knob of CTDE PPO, declared once as data.

Names follow CleanRL's `Args` where one exists (`gamma`, `gae_lambda`,
`clip_coef`, `max_grad_norm`, ...), so the loss and the loop read like
`cleanrl/ppo.py`.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.imports import import_object

CriticKind = Literal["central", "independent", "none"]
SUBGOAL_CHARS = 80


class SocialConfig(BaseModel):
    """`training.social`: summaries of the other agents' recent episodes in each prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: int = Field(default=1, ge=1, description="Iterations between refreshes.")


class SubGoal(BaseModel):
    """One sub-goal of the scenario's goal: what a state meets, and what meeting it is worth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(min_length=1, max_length=SUBGOAL_CHARS,
                             description="A condition a state of the game can meet.")
    value: Literal[1, 2, 3, 4, 5] = Field(description="How much meeting it is worth, 1-5.")


class ShapingConfig(BaseModel):
    """`training.shaping`: potential-based reward shaping from sub-goals of a goal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal: str | None = Field(default=None, min_length=1, description="The goal in words; "
                             "the base model splits it into sub-goals.")
    subgoals: list[SubGoal] | None = Field(default=None, min_length=1, description="The "
                                           "sub-goals, given: the model writes none.")
    max_subgoals: int = Field(default=3, ge=1, le=5, description="Most sub-goals written.")
    judge: str = Field(default="model", description="Who decides whether a state meets a "
                       "sub-goal: `model` (the base model answers yes or no) or "
                       "`module:function`, called as function(subgoal, state) -> bool.")
    scale: float = Field(default=1.0, gt=0.0, description="Potential of a state meeting "
                         "every sub-goal.")

    @model_validator(mode="after")
    def _goal_or_subgoals(self) -> ShapingConfig:
        if self.goal is None and self.subgoals is None:
            raise ValueError("give a goal (the model writes sub-goals) or the subgoals")
        if self.judge != "model":
            import_object(self.judge)  # a predicate that does not import fails here, by name
        return self


class StopConfig(BaseModel):
    """`training.stop`: end the run early once the training success rate holds a target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    success: float = Field(ge=0.0, le=1.0, description="The success rate to hold.")
    window: int = Field(
        default=3, ge=1, description="Consecutive iterations whose mean success must reach it."
    )

    def reached(self, history: list[float]) -> bool:
        """Whether the last `window` iterations' success rates average at least `success`."""
        recent = history[-self.window:]
        return len(recent) == self.window and math.fsum(recent) / self.window >= self.success


class PPOConfig(BaseModel):
    """Hyper-parameters of one CTDE PPO training run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Returns and advantages.
    gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="Discount factor.")
    gae_lambda: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="GAE lambda: 0 is one-step TD, 1 is Monte-Carlo returns minus the value.",
    )
    normalise_advantages: bool = Field(
        default=True,
        description="Standardise advantages (zero mean, unit std) per minibatch before the "
        "surrogate, as CleanRL's `norm_adv`.",
    )

    # The loss.
    clip_coef: float = Field(
        default=0.2, gt=0.0, description="Surrogate clipping: ratios outside 1 ± clip_coef."
    )
    clip_value: bool = Field(
        default=True,
        description="Clip the value update around the rollout-time value (CleanRL `clip_vloss`).",
    )
    value_clip_coef: float = Field(
        default=0.2,
        gt=0.0,
        description="How far a new value may move from the rollout-time value when clip_value.",
    )
    value_coef: float = Field(default=0.5, ge=0.0, description="Weight of the value loss.")
    entropy_coef: float = Field(
        default=0.01,
        ge=0.0,
        description="Weight of the entropy bonus; the untrained model's choices are very "
        "peaked, so exploration needs it.",
    )
    kl_coef: float = Field(
        default=0.05,
        ge=0.0,
        description="Weight of the KL penalty to the reference policy (the base model with "
        "the LoRA adapter off); keeps messages in language the base model would write.",
    )

    # The optimisation.
    epochs: int = Field(default=4, ge=1, description="Passes over each iteration's batch.")
    minibatches: int = Field(default=4, ge=1, description="Minibatches per epoch.")
    max_grad_norm: float = Field(
        default=0.5, gt=0.0, description="Global gradient-norm clip, per optimiser step."
    )
    actor_lr: float = Field(default=1e-4, gt=0.0, description="Adam learning rate of the policy.")
    actor_lr_scale: dict[str, float] = Field(
        default_factory=dict,
        description="Per adapter (an agent's name, or `shared`), a factor on `actor_lr`: "
        "learning-rate asymmetry, e.g. {listener: 0.3} so that a listener does not settle "
        "before the speaker's words carry anything. Unnamed adapters: 1.",
    )
    critic_lr: float = Field(default=5e-4, gt=0.0, description="Adam learning rate of the critic.")
    anneal_lr: bool = Field(
        default=False,
        description="Decay both learning rates linearly to 0 over the run (CleanRL "
        "`anneal_lr`): large steps early, a policy that settles late.",
    )

    # The run.
    episodes_per_iteration: int = Field(
        default=16, ge=1, description="Episodes collected before each PPO update."
    )
    iterations: int = Field(default=50, ge=1, description="Collect-then-update iterations.")
    critic: CriticKind = Field(
        default="central",
        description="central: one critic reads the joint view of the step (CTDE, MAPPO); "
        "independent: each agent's critic reads its own view (IPPO); none: no critic, "
        "advantages are returns (REINFORCE-style).",
    )
    lora_rank: int = Field(default=8, ge=1, description="Rank r of each LoRA adapter.")
    lora_alpha: float = Field(
        default=16.0, gt=0.0, description="LoRA alpha; the update is scaled by alpha / rank."
    )
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Names of the linear layers that get LoRA adapters (attention by default; "
        "add the MLP's gate_proj, up_proj, down_proj for more capacity).",
    )
    lora_layers: int | None = Field(
        default=None,
        ge=1,
        description="Put the LoRA adapters in the top N transformer layers only (None: all). "
        "The backward pass stops below the lowest adapter, so each update costs less.",
    )
    shared_policy: bool = Field(
        default=False,
        description="All agents share one adapter (parameter sharing) instead of one each.",
    )
    seed: int = Field(default=0, description="Seed for torch, numpy and environment resets.")

    # Rollouts, critic features and bookkeeping (added with the trainer loop).
    concurrency: int = Field(
        default=8,
        ge=1,
        description="Episodes played at once during a rollout, each on its own in-process bus; "
        "their model calls batch together in the one inference engine.",
    )
    recompute_logprobs: bool = Field(
        default=True,
        description="Recompute the rollout-time log-probs (same distribution: schema mask, "
        "temperature, top-p, epsilon) with the update's own unbatched forward pass before "
        "the first epoch, so float noise of batched, padded sampling does not show up as "
        "a ratio != 1; costs one forward pass per decision without gradients.",
    )
    critic_model: Literal["frozen", "lora"] = Field(
        default="frozen",
        description="frozen: a value head on the base model's pooled hidden states, computed "
        "once per rollout (cheap; its features cannot learn); lora: the critic's own LoRA "
        "adapter on the base model (rank, alpha, targets and layers as the actors') with a "
        "value head on the last token, trained by the value loss alone (about doubles an "
        "iteration's time on a CPU; see the README for what it measured).",
    )
    critic_sharing: Literal["shared", "per_agent"] = Field(
        default="shared",
        description="shared: one critic gives every agent's values (MAPPO; the agent id is "
        "in its text); per_agent: one critic (adapter and head) per agent.",
    )
    critic_pooling: Literal["mean", "last"] = Field(
        default="mean",
        description="The frozen critic's pooling of the base model's last hidden states: "
        "mean over tokens, or the last token (the LoRA critic reads the last token).",
    )
    critic_hidden: int = Field(
        default=64, ge=1, description="Width of the value head's hidden layer."
    )
    checkpoint_every: int = Field(
        default=1,
        ge=1,
        description="Save a checkpoint every this many iterations (and after the last).",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads during training; None keeps torch's default (one "
        "per core). On a machine shared with other busy processes 1 can be many times faster "
        "than oversubscribed cores.",
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="Rollout workers on Ray (`pip install 'parley[ray]'`): each iteration's "
        "episode blocks are played by this many Ray actors, each with its own engine and the "
        "learner's adapter weights, with the episodes the one-process rollout would give; "
        "0 plays them in this process. `parley train --ray-address` joins a cluster.",
    )

    @field_validator("workers")
    @classmethod
    def _ray_installed(cls, workers: int) -> int:
        if workers and importlib.util.find_spec("ray") is None:
            raise ValueError("Ray is not installed: pip install 'parley[ray]' (or workers: 0)")
        return workers

    keep_checkpoints: int = Field(
        default=3, ge=0, description="Keep the newest this many checkpoints; 0 keeps them all."
    )
    social: SocialConfig | None = Field(
        default=None,
        description="Social learning: every `every` iterations the base model summarises "
        "the other agents' recent messages and each learning agent reads its summary at "
        "the end of its system prompt (recorded in OUT/social.jsonl); None: off.",
    )

    shaping: ShapingConfig | None = Field(
        default=None,
        description="Reward shaping: each agent-step's reward gains gamma * Phi(s') - "
        "Phi(s), Phi the value of the sub-goals the state meets (training.shaping); None: off.",
    )
    stop: StopConfig | None = Field(
        default=None,
        description="Early stop: end the run (with a checkpoint and the final adapters) once "
        "the mean training success of the last `window` iterations reaches `success`; "
        "None: run every iteration.",
    )

    @model_validator(mode="after")
    def _minibatches_fit(self) -> PPOConfig:
        # Each episode gives at least one sample, so this keeps every minibatch non-empty.
        if self.minibatches > self.episodes_per_iteration:
            raise ValueError(
                f"minibatches ({self.minibatches}) exceeds episodes_per_iteration "
                f"({self.episodes_per_iteration}): some minibatches would be empty"
            )
        return self

    @property
    def total_episodes(self) -> int:
        """Episodes collected over the whole run."""
        return self.episodes_per_iteration * self.iterations

    @property
    def lora_scaling(self) -> float:
        """The factor LoRA multiplies its low-rank update by (alpha / rank)."""
        return self.lora_alpha / self.lora_rank

    @property
    def uses_critic(self) -> bool:
        """Whether a value function is trained at all."""
        return self.critic != "none"

    def minibatch_size(self, batch_size: int) -> int:
        """Samples per minibatch for a batch of `batch_size` samples.

        Rounds up, so that `minibatches` slices cover the batch and no sample is dropped
        (the last minibatch may be smaller).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        return math.ceil(batch_size / self.minibatches)
