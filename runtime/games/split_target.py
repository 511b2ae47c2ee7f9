"""Split target: two agents each know half of a hidden target and must both find it.

A grid of objects (by default 2 colours x 2 shapes: `red circle`, `red square`,
`blue circle`, `blue square`) hides one target. `alice` is told the target's first
attribute (its colour), `bob` its second (its shape): each alone narrows the grid to a
row or a column, both together to the target. Nothing else tells them apart; the only
way to share what is private is a message on the bus.

The episode has `rounds` rounds (3 by default) with the same target. In each round both
agents speak, then each picks an object from its own shuffled list. No reward arrives
before the end: then both get the fraction of all picks (every round, both agents)
that were the target, and the episode is a success when both last picks are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pydantic import Field, model_validator

from runtime.games.text import FloatArray, GameOptions, StepResult, one_hot, parse_options, seeded

AGENTS = ("alice", "bob")


class SplitTargetOptions(GameOptions):
    """Options of the split-target game (YAML `options:`)."""

    attributes: dict[str, list[str]] = Field(
        default_factory=lambda: {"colour": ["red", "blue", "green"],
                                 "shape": ["circle", "square", "triangle"]},
        description="Two attributes: alice is told the target's first, bob its second.",
    )
    grid: int = Field(default=2, ge=2, description="Values of each attribute in the round's "
                      "objects: grid x grid objects, each half of the target leaves grid.")
    rounds: int = Field(default=3, ge=1, description="Rounds per episode, one target.")

    @model_validator(mode="after")
    def _check(self) -> SplitTargetOptions:
        if len(self.attributes) != 2:
            raise ValueError("exactly two attributes: one for alice, one for bob")
        words = [word for values in self.attributes.values() for word in values]
        if len(set(words)) != len(words) or not all(w.strip() for w in words):
            raise ValueError("attribute values must be non-empty and distinct")
        if any(len(values) < self.grid for values in self.attributes.values()):
            raise ValueError(f"each attribute needs at least grid={self.grid} values")
        return self


class SplitTargetGame(ParallelEnv):  # type: ignore[misc]  # pettingzoo ships no type hints
    """Two agents, two halves of a target, `rounds` picks each, one team reward at the end."""

    metadata: ClassVar[dict[str, Any]] = {"name": "parley_split_target_v0", "render_modes": []}

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(SplitTargetOptions, "split_target", options)
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self._names, self._values = zip(*self.options.attributes.items(), strict=True)
        k = self.options.grid ** 2
        width = sum(len(values) for values in self._values)
        box = gymnasium.spaces.Box(0.0, 1.0, shape=((k + 1) * width,), dtype=np.float32)
        self._spaces = {agent: (box, gymnasium.spaces.Discrete(k)) for agent in AGENTS}
        self._rng = np.random.default_rng()
        self._objects: list[tuple[int, int]] = []
        self._target = (0, 0)
        self._orders: dict[str, list[int]] = {}
        self._round = 0
        self._correct: list[bool] = []

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """The agent's Box; always the same object, as PettingZoo's API test demands."""
        return self._spaces[agent][0]

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Discrete(grid x grid): an object, in the agent's own order."""
        return self._spaces[agent][1]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, FloatArray], dict[str, dict[str, Any]]]:
        """Draw the grid, the target and each agent's order; the same seed draws the same."""
        if seed is not None:
            self._rng = seeded(self, seed, AGENTS)
        self.agents = list(AGENTS)
        grid = self.options.grid
        rows, columns = (sorted(int(i) for i in self._rng.choice(len(values), grid,
                                                                  replace=False))
                         for values in self._values)
        self._objects = [(r, c) for r in rows for c in columns]
        self._target = self._objects[int(self._rng.integers(len(self._objects)))]
        self._orders = {agent: [int(i) for i in self._rng.permutation(len(self._objects))]
                        for agent in AGENTS}
        self._round, self._correct = 0, []
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]) -> StepResult:
        """Score both picks (a missing one is wrong); the reward comes after the last round."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        last = []
        for agent in AGENTS:
            pick = actions.get(agent)
            if pick is not None and not 0 <= int(pick) < len(self._objects):
                raise ValueError(f"{agent} action {pick} is outside Discrete({len(self._objects)})")
            hit = pick is not None and self._objects[self._orders[agent][int(pick)]] == self._target
            last.append(hit)
        self._correct += last
        self._round += 1
        done = self._round >= self.options.rounds
        reward = sum(self._correct) / len(self._correct) if done else 0.0
        info: dict[str, Any] = {"round": self._round, "correct": last}
        if done:
            info["success"] = all(last)
        observations = self._observations()
        agents, self.agents = self.agents, [] if done else self.agents
        return (observations, dict.fromkeys(agents, reward), dict.fromkeys(agents, done),
                dict.fromkeys(agents, False), {agent: dict(info) for agent in agents})

    def action_names(self, agent: str) -> list[str]:
        """The objects, in the agent's own order."""
        return [self._describe(self._objects[i]) for i in self._order(agent)]

    def text_observation(self, agent: str) -> str:
        """Round, objects in the agent's order, and its half of the target."""
        half = self._half(agent)
        rounds = self.options.rounds
        header = f"Round {self._round + 1} of {rounds}. " if rounds > 1 else ""
        told = self._values[half][self._target[half]]
        return (f"{header}Objects: {', '.join(self.action_names(agent))}. "
                f"Target {self._names[half]}: {told}.")

    def private_information(self, agent: str) -> str:
        """The agent's half of the target, e.g. `red` for alice."""
        half = self._half(agent)
        return str(self._values[half][self._target[half]])

    def observation(self, agent: str) -> FloatArray:
        """One-hot objects in the agent's order, then its half of the target."""
        half = self._half(agent)
        known = [self._target[half] if i == half else -1 for i in range(2)]
        parts = [self._encode(self._objects[i]) for i in self._order(agent)]
        return np.concatenate([*parts, self._encode((known[0], known[1]))])

    def _order(self, agent: str) -> list[int]:
        self._half(agent)  # an unknown agent raises KeyError
        return self._orders[agent]

    @staticmethod
    def _half(agent: str) -> int:
        """Which half of the target the agent is told: 0 for alice, 1 for bob."""
        if agent not in AGENTS:
            raise KeyError(f"unknown agent {agent!r}; agents: {list(AGENTS)}")
        return AGENTS.index(agent)

    def _describe(self, obj: tuple[int, int]) -> str:
        return " ".join(values[i] for values, i in zip(self._values, obj, strict=True))

    def _encode(self, obj: tuple[int, int]) -> FloatArray:
        return np.concatenate([one_hot(i, len(values))
                               for values, i in zip(self._values, obj, strict=True)])

    def _observations(self) -> dict[str, FloatArray]:
        return {agent: self.observation(agent) for agent in self.agents}
