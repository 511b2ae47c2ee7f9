"""Parley's built-in text games: PettingZoo ParallelEnvs that also speak text.

Each game takes its YAML `options:` as keyword arguments and adds two methods
to the PettingZoo API (the `TextGame` protocol): `text_observation(agent)` and
`action_names(agent)`. Masks go in `infos[agent]["action_mask"]`; a finished
episode reports `infos[agent]["success"]` where success means something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv

from runtime.games.matrix import PRESETS, MatrixGame, MatrixOptions
from runtime.games.negotiation import NegotiationGame, NegotiationOptions
from runtime.games.referential import ReferentialGame
from runtime.games.referential_options import ReferentialOptions
from runtime.games.split_target import SplitTargetGame, SplitTargetOptions
from runtime.games.text import GameOptions, TextGame

GAMES: dict[str, Callable[..., ParallelEnv]] = {
    "referential": ReferentialGame,
    "matrix": MatrixGame,
    "negotiation": NegotiationGame,
    "split_target": SplitTargetGame,
}


def make_game(name: str, **options: Any) -> ParallelEnv:
    """Build a built-in game by name from its keyword options.

    Raises:
        ValueError: for an unknown name or bad options.
    """
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; built-in games: {sorted(GAMES)}")
    return GAMES[name](**options)


__all__ = [
    "GAMES",
    "PRESETS",
    "GameOptions",
    "MatrixGame",
    "MatrixOptions",
    "NegotiationGame",
    "NegotiationOptions",
    "ReferentialGame",
    "ReferentialOptions",
    "SplitTargetGame",
    "SplitTargetOptions",
    "TextGame",
    "make_game",
]
