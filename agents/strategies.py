"""Memory-one strategies for iterated two-player matrix games: the classic baselines.

A memory-one strategy picks its action from what both players did in the last round
(or from an opening distribution in round one): always-cooperate, always-defect,
tit-for-tat, uniform random and a stage-game equilibrium are all of this kind, and so is
the empirical strategy `parley analyze policies` estimates from a trained agent's play.
`type: strategy` plays one in any scenario of the matrix game, reading the last round
from the game's numeric observation (own last action one-hot, the other's, progress).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.base import AgentContext, Choice, Utterance
from protocols import Envelope, Observation

Probabilities = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MemoryOne:
    """`opening[a]`: P(a) in round one; `after[mine, theirs, a]`: P(a) after that round."""

    opening: Probabilities
    after: Probabilities

    @property
    def actions(self) -> int:
        return len(self.opening)

    def next_action(self, last: tuple[int, int] | None) -> Probabilities:
        """The action distribution after `last` = (own action, the other's), or opening."""
        return self.opening if last is None else self.after[last]


def always(action: int, actions: int) -> MemoryOne:
    """Plays `action` every round."""
    pure = np.eye(actions)[action]
    return MemoryOne(pure, np.broadcast_to(pure, (actions, actions, actions)).copy())


def tit_for_tat(actions: int) -> MemoryOne:
    """Opens with action 0 (cooperate in the shipped presets), then copies the other."""
    copy = np.broadcast_to(np.eye(actions)[None, :, :], (actions, actions, actions)).copy()
    return MemoryOne(np.eye(actions)[0], copy)


def stationary(probabilities: Sequence[float]) -> MemoryOne:
    """The same mixed action every round, whatever happened (uniform, an equilibrium)."""
    mixed = np.asarray(probabilities, dtype=np.float64)
    n = len(mixed)
    return MemoryOne(mixed, np.broadcast_to(mixed, (n, n, n)).copy())


class StrategyOptions(BaseModel):
    """Options of `type: strategy`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["always", "tit_for_tat", "mixed"] = Field(
        description="always: one action every round; tit_for_tat: opens with action 0, then "
        "plays the other's last action; mixed: `probabilities` every round.")
    action: int = Field(default=0, ge=0, description="The action of `always`.")
    probabilities: list[float] | None = Field(
        default=None, description="One probability per action, for `mixed` (uniform if unset).")

    @model_validator(mode="after")
    def _probabilities_sum_to_one(self) -> StrategyOptions:
        probs = self.probabilities
        if probs is not None and (min(probs) < 0 or not np.isclose(sum(probs), 1.0)):
            raise ValueError(f"probabilities {probs} must be non-negative and sum to 1")
        return self

    def build(self, actions: int) -> MemoryOne:
        """The strategy for a game of `actions` actions; ValueError if it does not fit."""
        if self.strategy == "tit_for_tat":
            return tit_for_tat(actions)
        if self.strategy == "always":
            if self.action >= actions:
                raise ValueError(f"action {self.action} is not one of the game's {actions}")
            return always(self.action, actions)
        probs = self.probabilities or [1.0 / actions] * actions
        if len(probs) != actions:
            raise ValueError(f"{len(probs)} probabilities for a game of {actions} actions")
        return stationary(probs)


def last_round(observation: Observation) -> tuple[int, int] | None:
    """(own, other's) last action from the matrix game's numeric observation; None in round one."""
    n = len(observation.action_names)
    data = observation.data
    if not isinstance(data, list) or len(data) != 2 * n + 1:
        raise ValueError(f"type: strategy plays the matrix game; its observation {data!r} "
                         "is not (own last action, other's last action, progress)")
    mine, theirs = np.asarray(data[:n], dtype=float), np.asarray(data[n:2 * n], dtype=float)
    if not mine.any():
        return None
    return int(mine.argmax()), int(theirs.argmax())


class StrategyAgent:
    """Plays a memory-one strategy (seeded); says nothing."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.options = StrategyOptions.model_validate(dict(context.options))
        self._rng = random.Random(context.seed)
        self._strategy: MemoryOne | None = None

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        if self._strategy is None:
            self._strategy = self.options.build(len(observation.action_names))
        probs = self._strategy.next_action(last_round(observation))
        return Choice(self._rng.choices(range(len(probs)), weights=list(probs))[0])

