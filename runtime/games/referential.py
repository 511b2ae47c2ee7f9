"""Referential game: a speaker describes a target object, a listener picks it out.

The message travels on the bus, never through the environment: the listener's
observation holds the objects (in its own shuffled order) and nothing about
which one is the target.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import gymnasium
import numpy as np
import structlog
from pettingzoo import ParallelEnv

from runtime.games.referential_options import ReferentialOptions
from runtime.games.text import (
    FloatArray,
    StepResult,
    join_words,
    one_hot,
    parse_options,
    seeded,
)

log = structlog.get_logger()

SPEAKER = "speaker"
LISTENER = "listener"
Obj = tuple[int, ...]

class ReferentialGame(ParallelEnv):  # type: ignore[misc]  # pettingzoo ships no type hints
    """Speaker sees the target among K objects; listener picks it from its own view.

    Team reward: both agents get `reward_correct` when the listener picks the
    target, `reward_wrong` otherwise. One step per round, `rounds` per episode.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "parley_referential_v0", "render_modes": []}

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(ReferentialOptions, "referential", options)
        self.possible_agents = [SPEAKER, LISTENER]
        self.agents: list[str] = []
        self._values = list(self.options.attributes.values())
        self._width = sum(len(v) for v in self._values)
        k = self.options.num_objects
        self._spaces = {
            SPEAKER: (self._box((k + 1) * self._width), gymnasium.spaces.Discrete(1)),
            LISTENER: (self._box(k * self._width), gymnasium.spaces.Discrete(k)),
        }
        self._rng = np.random.default_rng()
        self._objects: list[Obj] = []  # speaker's order
        self._target = 0  # index into self._objects
        self._listener_order: list[int] = []  # listener position -> speaker index
        self._round = 0
        self._correct = 0

    @staticmethod
    def _box(size: int) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """The agent's Box; always the same object, as PettingZoo's API test demands."""
        return self._spaces[agent][0]

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Discrete(1) (`done`) for the speaker, Discrete(K) for the listener."""
        return self._spaces[agent][1]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, dict[str, Any]]]:
        """Start an episode; the same seed draws the same objects, targets and orders."""
        if seed is not None:
            self._rng = seeded(self, seed, self.possible_agents)
        self.agents = list(self.possible_agents)
        self._round = 0
        self._correct = 0
        self._draw_round()
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]) -> StepResult:
        """Score the listener's pick; draw the next round or end the episode."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        k = self.options.num_objects
        pick = int(actions[LISTENER]) if LISTENER in actions else None  # none: a wrong pick
        if pick is not None and not 0 <= pick < k:
            raise ValueError(f"listener action {pick} is outside Discrete({k})")
        correct = pick is not None and self._listener_order[pick] == self._target
        self._correct += int(correct)
        self._round += 1
        done = self._round >= self.options.rounds
        reward = self._reward(correct, done)
        info: dict[str, Any] = {"correct": correct, "round": self._round}
        if done:
            info["success"] = self._correct == self.options.rounds
            info["success_rate"] = self._correct / self.options.rounds
            log.debug("referential_episode_end", correct=self._correct, rounds=self._round)
        else:
            self._draw_round()
        agents = self.agents
        observations = self._observations()
        if done:
            self.agents = []
        return (
            observations,
            dict.fromkeys(agents, reward),
            dict.fromkeys(agents, done),
            dict.fromkeys(agents, False),
            {agent: dict(info) for agent in agents},
        )

    def _reward(self, correct: bool, done: bool) -> float:
        """This pick's pay, or with `reward_at: end` nothing until the episode's mean pay."""
        low, high = self.options.reward_wrong, self.options.reward_correct
        if self.options.reward_at == "each_round":
            return high if correct else low
        return low + (high - low) * self._correct / self.options.rounds if done else 0.0

    def action_names(self, agent: str) -> list[str]:
        """`done` for the speaker; for the listener, object descriptions in its own order."""
        if agent == SPEAKER:
            return ["done"]
        self._check_agent(agent)
        return [self.describe(self._objects[i]) for i in self._listener_order]

    def text_observation(self, agent: str) -> str:
        """What the agent sees, in words; the listener's never tells the target apart."""
        self._check_agent(agent)
        header = (
            f"Round {self._round + 1} of {self.options.rounds}. " if self.options.rounds > 1 else ""
        )
        if self.options.show_score and self._round:
            header += f"Right so far: {self._correct} of {self._round}. "
        if self.options.wording == "brief":
            return self._brief_observation(agent, header)
        if agent == SPEAKER and self.options.speaker_view == "target":
            return (
                f"{header}You are the speaker in a reference game. Your target is the "
                f"{self.describe(self._objects[self._target])}. The listener sees it among "
                f"{len(self._objects) - 1} other objects and must pick it from your message. "
                "Describe the target so it cannot be mistaken for the others."
            )
        if agent == SPEAKER:
            listing = join_words([self.describe(obj) for obj in self._objects])
            return (
                f"{header}You are the speaker in a reference game. There are "
                f"{len(self._objects)} objects: {listing}. Your target is the "
                f"{self.describe(self._objects[self._target])}. The listener sees the same objects "
                "in another order, does not know which one is the target, and must pick it from "
                "your message. Describe the target so it cannot be mistaken for the others."
            )
        listing = join_words(self.action_names(LISTENER))
        return (
            f"{header}You are the listener in a reference game. There are "
            f"{len(self._objects)} objects: {listing}. The speaker knows which one is the target "
            "and describes it in a message to you. Pick the object the speaker means."
        )

    def private_information(self, agent: str) -> str | None:
        """The speaker's target, in words; the listener knows nothing the speaker does not."""
        self._check_agent(agent)
        return self.describe(self._objects[self._target]) if agent == SPEAKER else None

    def _brief_observation(self, agent: str, header: str) -> str:
        if agent == SPEAKER:
            target = self.describe(self._objects[self._target])
            if self.options.speaker_view == "target":
                return f"{header}Target: {target}."
            listing = ", ".join(self.describe(obj) for obj in self._objects)
            return f"{header}Objects: {listing}. Target: {target}."
        return f"{header}Objects: {', '.join(self.action_names(LISTENER))}."

    def observation(self, agent: str) -> FloatArray:
        """Numeric view: one-hot attributes; the speaker's starts with the target."""
        self._check_agent(agent)
        if agent == SPEAKER:
            objects = [self._objects[self._target], *self._objects]
        else:
            objects = [self._objects[i] for i in self._listener_order]
        return np.concatenate([self._encode(obj) for obj in objects])

    def describe(self, obj: Obj) -> str:
        """Words for one object, e.g. `small red circle`."""
        return " ".join(values[i] for values, i in zip(self._values, obj, strict=True))

    def _observations(self) -> dict[str, FloatArray]:
        return {agent: self.observation(agent) for agent in self.agents}

    def _encode(self, obj: Obj) -> FloatArray:
        return np.concatenate(
            [one_hot(i, len(values)) for values, i in zip(self._values, obj, strict=True)]
        )

    def _check_agent(self, agent: str) -> None:
        if agent not in self.possible_agents:
            raise KeyError(f"unknown agent {agent!r}; agents: {self.possible_agents}")

    def _draw_round(self) -> None:
        """Draw the round's objects and target (per `draw`); shuffle both views apart."""
        everything: list[Obj] = list(itertools.product(*(range(len(v)) for v in self._values)))
        draw = self._uniform_set if self.options.draw == "uniform" else self._set_around_target
        self._objects, self._target = draw(everything)
        self._listener_order = [int(i) for i in self._rng.permutation(len(self._objects))]

    def _uniform_set(self, everything: list[Obj]) -> tuple[list[Obj], int]:
        """K distinct objects in random order, then the target among them."""
        chosen = self._rng.choice(len(everything), size=self.options.num_objects, replace=False)
        return [everything[int(i)] for i in chosen], int(self._rng.integers(len(chosen)))

    def _set_around_target(self, everything: list[Obj]) -> tuple[list[Obj], int]:
        """A target, then K-1 distinct distractors near it or far from it, shuffled."""
        target = everything[int(self._rng.integers(len(everything)))]
        near = [o for o in everything if sum(a != b for a, b in zip(o, target, strict=True)) == 1]
        far = [o for o in everything if o != target and o not in near]
        distractors: list[Obj] = []
        for _ in range(self.options.num_objects - 1):
            wants_near = self._rng.random() < self.options.distractor_similarity
            pool = near if (wants_near and near) or not far else far
            distractors.append(pool.pop(int(self._rng.integers(len(pool)))))
        objects = [target, *distractors]
        speaker_order = [int(i) for i in self._rng.permutation(len(objects))]
        return [objects[i] for i in speaker_order], speaker_order.index(0)
