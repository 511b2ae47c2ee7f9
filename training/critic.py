"""The critic: a value per decision point, read from the text of the bus record.

What the critic reads for agent i at step t:

- `central` (CTDE, MAPPO): the agent id, every agent's observation and every
  message of step t that existed at the decision point;
- `independent` (IPPO): the agent id, i's own observation and inbox only.

Two ways to turn that text into a value (`training.critic_model`):

- `lora` (default): the critic's own LoRA adapter on the one base model, and a value
  head on the last token's hidden state. The value loss trains only that adapter and
  the head: the actors' adapters are not in its forward pass, and the reference
  policy stays the base model with every adapter off.
- `frozen`: a value head on the base model's mean-pooled hidden states, computed once
  per rollout without gradient. Cheap, but the features cannot learn what decides the
  outcome (whether a message names the target): its explained variance stayed about 0.

One critic for all agents (`critic_sharing: shared`, MAPPO's per-agent values from a
shared network: the agent id is in the text) or one per agent (`per_agent`: an
adapter and a head each). Values are in the units of a `ValueNormaliser` (the
trainer normalises targets and denormalises predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from protocols import Envelope
from training.config import CriticKind, PPOConfig
from training.hidden import Pooling, hidden_states, text_features, tokenise
from training.normalise import ValueNormaliser
from training.trajectory import AgentStep, Trajectories

CRITIC_ADAPTER = "critic"
"""The LoRA critic's adapter (per-agent critics: `critic_0`, `critic_1`, ...)."""

Phase = Literal["speak", "act"]
PHASES: tuple[Phase, Phase] = ("speak", "act")


def critic_text(trajectories: Trajectories, step: AgentStep, kind: CriticKind,
                phase: Phase = "act") -> str:
    """The critic's input for `step.agent` at one decision point of that step.

    A step has two decision points, and the critic sees what existed at each: at
    `speak` the observations only, at `act` also the step's messages. A value
    that read the speaker's own message would predict the outcome of that very
    message, and its advantage would average to zero: the speaker could not learn.
    """
    lines = [f"agent: {step.agent}", f"phase: {phase}"]
    if kind == "central":
        joint = trajectories.joint_of(step)
        lines += [f"observation of {name}: {obs.text}" for name, obs in joint.observations.items()]
        if phase == "act":
            lines += [_message_line(env) for env in joint.messages]
    elif kind == "independent":
        lines.append(f"observation: {step.observation.text}")
        if phase == "act":
            lines += [_message_line(env) for env in step.inbox]
    else:
        raise ValueError(f"critic {kind!r} reads no text")
    return "\n".join(lines)


def value_row(step: int, kind: Literal["message", "action"]) -> int:
    """The value row of a decision of agent-step `step`: messages at speak, actions at act."""
    return 2 * step + (0 if kind == "message" else 1)


def _message_line(env: Envelope) -> str:
    """One message as the critic reads it: sender, recipient and the payload as JSON.

    Keys are sorted so that equal messages read the same whatever their model's
    field order (and the text, hence its features, stays what it always was).
    """
    return f"message {env.sender} -> {env.recipient}: {env.payload_json(sort_keys=True)}"


@dataclass(frozen=True)
class CriticRows:
    """The critic's input for one rollout: two rows per agent-step (speak, then act), in
    `trajectories.steps` order (`value_row` maps a decision to its row).

    Attributes:
        agents: whose value each row is.
        tokens: each row's text, tokenised (what the LoRA critic reads each epoch).
        features: the frozen critic's features, computed once; None for the LoRA critic.
    """

    agents: list[str]
    tokens: list[list[int]]
    features: torch.Tensor | None


def critic_names(agents: Sequence[str], sharing: Literal["shared", "per_agent"]
                 ) -> dict[str, str]:
    """agent -> the critic that values it: one for all, or one each (by sorted name)."""
    if sharing == "shared":
        return dict.fromkeys(agents, CRITIC_ADAPTER)
    return {agent: f"{CRITIC_ADAPTER}_{i}" for i, agent in enumerate(sorted(agents))}


def _value_head(width: int, hidden: int) -> nn.Module:
    # LayerNorm first: hidden-state scales differ wildly between models.
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.Tanh(),
                         nn.Linear(hidden, 1))


class Critic(nn.Module):
    """Value heads (one per critic name) over the model's reading of the critic's text.

    The model is not a submodule: the critic's `state_dict` holds its heads only (its
    LoRA adapters, if any, are saved with the model's).

    Args:
        width: the model's hidden size.
        config: `critic` (central or independent), `critic_model`, `critic_sharing`,
            `critic_hidden`, `critic_pooling` (frozen critic only).
        agents: every agent that gets values.
        pad: the tokenizer's padding id.
    """

    def __init__(self, width: int, config: PPOConfig, agents: Sequence[str], pad: int = 0
                 ) -> None:
        super().__init__()
        if config.critic == "none":
            raise ValueError("critic 'none' has no value head")
        self.kind: CriticKind = config.critic
        self.learns_features = config.critic_model == "lora"
        self.pooling: Pooling = "last" if self.learns_features else config.critic_pooling
        self.names = critic_names(agents, config.critic_sharing)
        self.heads = nn.ModuleDict({name: _value_head(width, config.critic_hidden)
                                    for name in sorted(set(self.names.values()))})
        self.normaliser = ValueNormaliser()
        self._pad = pad

    @property
    def adapters(self) -> list[str]:
        """The LoRA adapters this critic trains (none for the frozen critic)."""
        return list(self.heads) if self.learns_features else []

    def texts(self, trajectories: Trajectories) -> list[str]:
        """The critic's input texts, two rows per agent-step (speak, then act)."""
        return [critic_text(trajectories, step, self.kind, phase)
                for step in trajectories.steps for phase in PHASES]

    def prepare(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase,
                trajectories: Trajectories) -> CriticRows:
        """Read a rollout once: tokens, and for the frozen critic its features.

        Identical texts (a step without messages reads alike at both phases) are
        encoded once.
        """
        texts = self.texts(trajectories)
        agents = [step.agent for step in trajectories.steps for _ in PHASES]
        if self.learns_features:
            return CriticRows(agents, tokenise(tokenizer, texts), None)
        unique = list(dict.fromkeys(texts))
        encoded = text_features(model, tokenizer, unique, self.pooling)
        where = {text: row for row, text in enumerate(unique)}
        features = encoded[torch.tensor([where[t] for t in texts], dtype=torch.long)]
        return CriticRows(agents, [], features)

    def forward(self, model: nn.Module, rows: CriticRows, index: torch.Tensor) -> torch.Tensor:
        """Normalised values of rows `index`, shape (len(index),); gradients reach only the
        heads and the critic's own adapters."""
        values = torch.zeros(len(index))
        for name, positions in self._by_critic(rows, index).items():
            chosen = index[positions]
            if rows.features is not None:
                features = rows.features[chosen]
            else:
                features = hidden_states(model, [rows.tokens[i] for i in chosen.tolist()],
                                         "last", name, pad=self._pad)
            values[positions] = self.heads[name](features).squeeze(-1)
        return values

    @torch.no_grad()
    def values(self, model: nn.Module, rows: CriticRows) -> torch.Tensor:
        """Values of every row in reward units (denormalised), no gradient."""
        every = torch.arange(len(rows.agents))
        return self.normaliser.denormalise(self.forward(model, rows, every))

    def _by_critic(self, rows: CriticRows, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Positions in `index` of the rows each critic values."""
        groups: dict[str, list[int]] = {}
        for position, row in enumerate(index.tolist()):
            groups.setdefault(self.names[rows.agents[row]], []).append(position)
        return {name: torch.tensor(positions) for name, positions in groups.items()}
