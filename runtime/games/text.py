"""What every built-in text game shares: the text contract, option parsing, small helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from protocols import describe

FloatArray = npt.NDArray[np.float32]
# What ParallelEnv.step returns: observations, rewards, terminations, truncations, infos.
StepResult = tuple[
    dict[str, FloatArray],
    dict[str, float],
    dict[str, bool],
    dict[str, bool],
    dict[str, dict[str, Any]],
]

OptionsT = TypeVar("OptionsT", bound="GameOptions")


@runtime_checkable
class TextGame(Protocol):
    """The part of a game the Runner relies on besides the PettingZoo API.

    `text_observation` is what a language model reads; `action_names` names
    each index of the agent's Discrete action space (unique per agent). The
    Runner appends the action names itself, so the text does not list them.
    """

    possible_agents: list[str]

    def text_observation(self, agent: str) -> str:
        """The agent's current observation, rendered for a language model."""
        ...

    def action_names(self, agent: str) -> list[str]:
        """A short, unique name for each action index of the agent."""
        ...


class GameOptions(BaseModel):
    """Base for a game's YAML `options:`; frozen and strict so typos fail loudly."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_options(model: type[OptionsT], game: str, options: Mapping[str, Any]) -> OptionsT:
    """Validate a game's keyword options, turning pydantic errors into a short ValueError.

    Raises:
        ValueError: naming the game, each bad option and why.
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as error:
        raise ValueError(f"bad options for game {game!r}: "
                         f"{describe(error, root='options')}") from None


def one_hot(index: int, size: int) -> FloatArray:
    """A float32 one-hot vector; an out-of-range index (e.g. -1 for "none") gives zeros."""
    vector = np.zeros(size, dtype=np.float32)
    if 0 <= index < size:
        vector[index] = 1.0
    return vector


def join_words(words: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`: lists read as a sentence."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def count_noun(count: int, noun: str) -> str:
    """`1 book`, `0 books`, `2 books` (regular plurals: the built-in items are)."""
    return f"{count} {noun if count == 1 else noun + 's'}"


def seeded(env: Any, seed: int, agents: Sequence[str]) -> np.random.Generator:
    """A game's generator for `seed`, after seeding each agent's action space (`seed + i`)."""
    for index, agent in enumerate(agents):
        env.action_space(agent).seed(seed + index)
    return np.random.default_rng(seed)
