"""The critic: a small value head on frozen language-model features of the step's text.

What the critic reads for agent i at step t is text built from the bus record:

- `central` (CTDE, MAPPO): the agent id, every agent's observation and every
  message of step t;
- `independent` (IPPO): the agent id, i's own observation and inbox only.

The features come from the base model with every LoRA adapter off and no
gradient: the critic never moves the policy's weights, and the features of a
rollout are computed once and reused by every epoch. Only the value head (a
small MLP) learns. It predicts values in the units of a `ValueNormaliser`
(the trainer normalises targets and denormalises predictions).
"""

from __future__ import annotations

import json
from typing import Literal

import torch
from peft import PeftModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope
from protocols import Envelope
from training.config import CriticKind
from training.normalise import ValueNormaliser
from training.trajectory import AgentStep, Trajectories

Pooling = Literal["mean", "last"]


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
    payload = json.dumps(env.payload.model_dump(mode="json"), ensure_ascii=False,
                         sort_keys=True)
    return f"message {env.sender} -> {env.recipient}: {payload}"


def hidden_size(model: nn.Module) -> int:
    """Width of the model's hidden states (the feature vector)."""
    return int(getattr(model, "config").hidden_size)  # noqa: B009 - transformers config


@torch.no_grad()
def text_features(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pooling: Pooling = "mean",
    batch_size: int = 16,
) -> torch.Tensor:
    """Pooled last hidden states of the base model (adapters off), shape (len(texts), width).

    Texts run in batches of similar length (right-padded; the mask keeps padding
    out of the pool). Returned as float32 on the CPU, detached.
    """
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    body: nn.Module = getattr(inner, "base_model", inner)  # the transformer without LM head
    device = next(model.parameters()).device
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.zeros((len(texts), hidden_size(model)), dtype=torch.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with adapter_scope(model, None):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[r]) for r in rows)
            batch = torch.full((len(rows), width), int(pad), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                batch[k, : len(ids[r])] = torch.tensor(ids[r])
                mask[k, : len(ids[r])] = 1
            hidden = body(input_ids=batch.to(device), attention_mask=mask.to(device),
                          use_cache=False).last_hidden_state.float()
            out[rows] = _pool(hidden, mask.to(device), pooling).cpu()
    return out


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "last":
        last = mask.sum(dim=-1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class CentralCritic(nn.Module):
    """Value head over frozen text features; `kind` picks the central or independent view.

    Args:
        width: feature width (the base model's hidden size).
        hidden: width of the head's hidden layer.
        kind: central or independent.
        pooling: how hidden states become one feature vector.
    """

    def __init__(self, width: int, hidden: int, kind: CriticKind = "central",
                 pooling: Pooling = "mean") -> None:
        super().__init__()
        if kind == "none":
            raise ValueError("critic 'none' has no value head")
        self.kind: CriticKind = kind
        self.pooling: Pooling = pooling
        # LayerNorm first: hidden-state scales differ wildly between models.
        self.head = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        self.normaliser = ValueNormaliser()

    def texts(self, trajectories: Trajectories) -> list[str]:
        """The critic's input texts: two rows per agent-step (speak, then act), in
        `trajectories.steps` order (`value_row` maps a decision to its row)."""
        return [critic_text(trajectories, step, self.kind, phase)
                for step in trajectories.steps for phase in PHASES]

    def features(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, trajectories: Trajectories
    ) -> torch.Tensor:
        """Features of every row of `texts`: computed once per rollout, no gradient.

        Identical texts (a step without messages reads the same at both phases) are
        encoded once.
        """
        texts = self.texts(trajectories)
        unique = list(dict.fromkeys(texts))
        encoded = text_features(model, tokenizer, unique, self.pooling)
        where = {text: row for row, text in enumerate(unique)}
        return encoded[torch.tensor([where[text] for text in texts], dtype=torch.long)]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised values, shape (rows,)."""
        values: torch.Tensor = self.head(features).squeeze(-1)
        return values

    @torch.no_grad()
    def values(self, features: torch.Tensor) -> torch.Tensor:
        """Values in reward units (denormalised), no gradient."""
        return self.normaliser.denormalise(self.forward(features))
