"""Reward shaping from sub-goals (seed §2.1.2), potential-based so the optimal policies stay.

The base model (adapters off), given the scenario's goal in words, writes up to
`max_subgoals` sub-goals, each worth 1-5, under a schema (always valid); or the YAML
lists them. A state's potential Phi(s) is `scale` times the worth of the sub-goals it
meets over the worth of all. Whether a state meets them is decided once per distinct
state text: by the model answering yes or no to each (greedy, under a schema), or by the
user's predicate `function(subgoal, state) -> bool`.

Each agent-step's reward gains F = gamma * Phi(s') - Phi(s), with Phi = 0 after the
episode's last step (Ng, Harada and Russell 1999): over an episode the bonus telescopes
to -Phi(s_0), which no policy can change, so the optimal policies do not change; a bonus
of Phi(s') alone would pay an agent for lingering in states that meet sub-goals.

The state of a step is what all agents observe at it and every message of the episode's
earlier steps (this step's messages are part of the joint action, not of the state).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from agents.llm.engine import InferenceEngine
from agents.llm.prompts import conversation
from agents.llm.structured import write_valid
from protocols.imports import import_object
from training.config import SUBGOAL_CHARS, ShapingConfig, SubGoal
from training.trajectory import StepKey, Trajectories

SUBGOALS_FILE = "subgoals.json"
SHAPING_FILE = "shaping.jsonl"
WRITER = "You break the goal of a game into a few sub-goals a state of the game can meet."
JUDGE = "You judge whether a state of a game meets each condition. Answer yes or no."
Predicate = Callable[[str, str], bool]


def potential_bonus(potential: float, next_potential: float, gamma: float,
                    done: bool) -> float:
    """F = gamma * Phi(s') - Phi(s); Phi(s') = 0 when the step ended the episode."""
    return gamma * (0.0 if done else next_potential) - potential


def matches(subgoal: str, state: str) -> bool:
    """A ready predicate (`judge: training.shaping:matches`): the sub-goal's description,
    read as a regular expression, occurs in the state's text."""
    return re.search(subgoal, state) is not None


async def write_subgoals(engine: InferenceEngine, goal: str, most: int) -> list[SubGoal]:
    """The base model's sub-goals of `goal` (1 to `most`), greedy, under a schema."""
    written = create_model("SubGoals", subgoals=(list[SubGoal], Field(min_length=1,
                                                                       max_length=most)))
    chat = conversation(WRITER, f"Goal: {goal}\nWrite at most {most} sub-goals, each a "
                        "condition on a state of the game, worth 1 (little) to 5 (much).")
    # JSON around each sub-goal ({"description": ..., "value": n}) takes ~20 tokens.
    answer: Any = await write_valid(engine, chat, written, most * (SUBGOAL_CHARS + 4))
    return list(answer.subgoals)


def _verdicts(subgoals: Sequence[SubGoal]) -> type[BaseModel]:
    """The judge's schema: a yes or no per sub-goal, in order."""
    fields: dict[str, Any] = {f"c{i + 1}": (Literal["yes", "no"], Field(
        description=goal.description)) for i, goal in enumerate(subgoals)}
    return create_model("Verdicts", **fields)


@dataclass
class Shaper:
    """Sub-goals, their judge, and the judgements made so far (by state text)."""

    subgoals: list[SubGoal]
    judge: InferenceEngine | Predicate
    scale: float = 1.0
    judgements: dict[str, tuple[bool, ...]] = field(default_factory=dict)

    @classmethod
    async def create(cls, engine: InferenceEngine, config: ShapingConfig) -> Shaper:
        """Sub-goals as given, or written by the model from the goal; the configured judge."""
        subgoals = config.subgoals
        if subgoals is None:
            assert config.goal is not None  # the config demands one of the two
            subgoals = await write_subgoals(engine, config.goal, config.max_subgoals)
        judge = engine if config.judge == "model" else import_object(config.judge)
        return cls(list(subgoals), judge, config.scale)

    async def met(self, state: str) -> tuple[bool, ...]:
        """Which sub-goals `state` meets; the judge is asked once per distinct state."""
        if state not in self.judgements:
            self.judgements[state] = await self._ask(state)
        return self.judgements[state]

    async def _ask(self, state: str) -> tuple[bool, ...]:
        if not isinstance(self.judge, InferenceEngine):
            return tuple(bool(self.judge(goal.description, state)) for goal in self.subgoals)
        conditions = "\n".join(f"c{i + 1}: {goal.description}"
                               for i, goal in enumerate(self.subgoals))
        chat = conversation(JUDGE, f"State:\n{state}\n\nConditions:\n{conditions}")
        answer = await write_valid(self.judge, chat, _verdicts(self.subgoals),
                                   8 * len(self.subgoals))
        return tuple(value == "yes" for value in answer.model_dump().values())

    def potential(self, met: Sequence[bool]) -> float:
        """Phi: `scale` times the worth of the met sub-goals over the worth of all."""
        worth = [goal.value for goal in self.subgoals]
        return self.scale * sum(w for w, ok in zip(worth, met, strict=True) if ok) / sum(worth)


def state_texts(trajectories: Trajectories) -> dict[StepKey, str]:
    """Each step's state: every agent's observation, then the episode's earlier messages."""
    by_episode: dict[tuple[str, int], list[StepKey]] = defaultdict(list)
    for key in trajectories.joint:
        by_episode[key[:2]].append(key)
    states = {}
    for keys in by_episode.values():
        earlier: list[str] = []
        for key in sorted(keys):
            joint = trajectories.joint[key]
            seen = [f"{agent} sees: {obs.text}" for agent, obs in joint.observations.items()]
            states[key] = "\n".join([*seen, *earlier])
            earlier += [f"{m.sender} said: {m.payload.model_dump_json()}"
                        for m in joint.messages]
    return states


@dataclass(frozen=True)
class Shaped:
    """Trajectories whose rewards carry the shaping bonus, and what was added where."""

    trajectories: Trajectories
    records: list[dict[str, Any]]

    def metrics(self) -> dict[str, float]:
        """Mean bonus per agent-step and mean potential of the steps' states."""
        if not self.records:
            return {}
        count = len(self.records)
        return {"shaping_bonus": sum(r["bonus"] for r in self.records) / count,
                "shaping_potential": sum(r["potential"] for r in self.records) / count}


async def shape(shaper: Shaper, trajectories: Trajectories, gamma: float) -> Shaped:
    """Every agent-step's reward plus gamma * Phi(s') - Phi(s) (its own next step's state)."""
    states = state_texts(trajectories)
    distinct = sorted(set(states.values()))
    # Asked at once, the model's judgements batch in the engine.
    met = dict(zip(distinct, await asyncio.gather(*map(shaper.met, distinct)), strict=True))
    potentials = {key: shaper.potential(met[text]) for key, text in states.items()}
    steps, records = [], []
    for index, step in enumerate(trajectories.steps):
        following = None if step.done else trajectories.steps[index + 1].key
        potential = potentials[step.key]
        bonus = potential_bonus(potential, potentials[following] if following else 0.0,
                                gamma, step.done)
        steps.append(replace(step, reward=step.reward + bonus))
        records.append({"run": step.run, "episode": step.episode, "step": step.step,
                        "agent": step.agent, "potential": potential, "bonus": bonus})
    return Shaped(replace(trajectories, steps=steps), records)


def record(out: Path, shaper: Shaper, shaped: Shaped, iteration: int) -> None:
    """OUT/subgoals.json (the sub-goals) and OUT/shaping.jsonl (every bonus, by step)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / SUBGOALS_FILE).write_text(json.dumps(
        [goal.model_dump() for goal in shaper.subgoals], indent=2) + "\n")
    with (out / SHAPING_FILE).open("a") as lines:
        for row in shaped.records:
            lines.write(json.dumps({"iteration": iteration, **row}) + "\n")
