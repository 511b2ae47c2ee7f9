"""`parley analyze game`: equilibria, best responses and welfare of a normal-form game.

The solving is pygambit's (Gambit, the field's maintained solver): every extreme Nash
equilibrium of a two-player game by enumerating the vertices of its best-response
polytopes (`enummixed_solve`), and for more players the equilibria of the global
Newton method (`gnm_solve`), which finds some, not provably all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pygambit as gbt
from pydantic import BaseModel, Field

from runtime.games.matrix import PLAYERS, MatrixOptions
from runtime.games.text import parse_options
from runtime.scenario import Scenario

TOLERANCE = 1e-9


@dataclass(frozen=True)
class NormalForm:
    """A game in normal form: `payoffs[a_0, ..., a_n-1, i]` is player i's payoff."""

    title: str
    players: list[str]
    actions: list[list[str]]
    payoffs: npt.NDArray[np.float64]


class Equilibrium(BaseModel):
    """One Nash equilibrium: each player's mixed strategy and what it is worth."""

    strategies: dict[str, dict[str, float]] = Field(description="player -> action -> prob.")
    payoffs: dict[str, float] = Field(description="Each player's expected payoff.")
    pure: bool
    welfare: float = Field(description="The sum of the expected payoffs.")
    pareto_optimal: bool = Field(
        description="No outcome of the table gives every player at least as much and one "
        "player more (compared with pure outcomes and with the other equilibria).")


class GameAnalysis(BaseModel):
    """What `parley analyze game` reports."""

    title: str
    players: list[str]
    actions: list[list[str]]
    method: str
    equilibria: list[Equilibrium]
    best_responses: dict[str, dict[str, list[str]]] = Field(
        description="player -> the others' pure actions (joined by ', ') -> best replies.")
    max_welfare: float = Field(description="The largest sum of payoffs of any pure outcome.")


def matrix_options(scenario: Scenario) -> MatrixOptions:
    """The options of the scenario's matrix game; ValueError if it plays another game."""
    if scenario.env.game != "matrix":
        name = scenario.env.game or scenario.env.pettingzoo or "this env"
        raise ValueError(f"{name} is not a normal-form game; only the matrix game (a preset "
                         "or a `payoff` table in its options) is")
    return parse_options(MatrixOptions, "matrix", dict(scenario.env.options))


def normal_form(scenario: Scenario) -> NormalForm:
    """The scenario's stage game as a table; ValueError if it is not a normal-form game."""
    title, actions, table = matrix_options(scenario).payoffs.resolve()
    return NormalForm(title, list(PLAYERS), [list(actions), list(actions)], table)


def analyze_game(game: NormalForm) -> GameAnalysis:
    """Equilibria (pygambit), pure best responses and welfare of `game`."""
    gambit = gbt.Game.from_arrays(*(game.payoffs[..., i] for i in range(len(game.players))),
                                  title=game.title)
    two = len(game.players) == 2
    solved = (gbt.nash.enummixed_solve(gambit, rational=False) if two
              else gbt.nash.gnm_solve(gambit))
    profiles = [_profile(gambit, eq) for eq in solved.equilibria]
    outcomes = game.payoffs.reshape(-1, len(game.players))
    expected = [_expected(game.payoffs, profile) for profile in profiles]
    candidates = np.vstack([outcomes, *expected]) if expected else outcomes
    equilibria = [
        Equilibrium(
            strategies={player: dict(zip(names, map(float, probs), strict=True))
                        for player, names, probs in zip(game.players, game.actions, profile,
                                                        strict=True)},
            payoffs=dict(zip(game.players, map(float, value), strict=True)),
            pure=all(np.isclose(probs.max(), 1.0) for probs in profile),
            welfare=float(value.sum()), pareto_optimal=not _dominated(value, candidates))
        for profile, value in zip(profiles, expected, strict=True)]
    return GameAnalysis(title=game.title, players=game.players, actions=game.actions,
                        method="enummixed (all extreme equilibria)" if two else "gnm (some)",
                        equilibria=equilibria, best_responses=best_responses(game),
                        max_welfare=float(outcomes.sum(axis=1).max()))


def _profile(game: Any, equilibrium: Any) -> list[npt.NDArray[np.float64]]:
    """A pygambit mixed profile as one probability vector per player."""
    return [np.array([float(equilibrium[s]) for s in player.strategies])
            for player in game.players]


def _expected(payoffs: npt.NDArray[np.float64],
              profile: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """Each player's expected payoff when all play `profile`."""
    value = payoffs
    for probs in profile:  # contract one player's action axis at a time
        value = np.tensordot(probs, value, axes=(0, 0))
    return np.asarray(value, dtype=np.float64)


def _dominated(value: npt.NDArray[np.float64], others: npt.NDArray[np.float64]) -> bool:
    at_least = (others >= value - TOLERANCE).all(axis=1)
    better = (others > value + TOLERANCE).any(axis=1)
    return bool((at_least & better).any())


def best_responses(game: NormalForm) -> dict[str, dict[str, list[str]]]:
    """For each player and each pure action profile of the others, the best pure replies."""
    replies: dict[str, dict[str, list[str]]] = {}
    for i, player in enumerate(game.players):
        others = [j for j in range(len(game.players)) if j != i]
        replies[player] = {}
        for profile in itertools.product(*(range(len(game.actions[j])) for j in others)):
            index: list[Any] = [slice(None)] * len(game.players)
            for j, action in zip(others, profile, strict=True):
                index[j] = action
            mine = game.payoffs[(*index, i)]
            best = [game.actions[i][a] for a in np.flatnonzero(mine >= mine.max() - TOLERANCE)]
            key = ", ".join(game.actions[j][a] for j, a in zip(others, profile, strict=True))
            replies[player][key] = best
    return replies


def render_game(analysis: GameAnalysis) -> str:
    """A few lines for a terminal."""
    lines = [f"{analysis.title}: {len(analysis.equilibria)} Nash equilibria "
             f"({analysis.method}); best welfare of any outcome {analysis.max_welfare:g}"]
    for n, eq in enumerate(analysis.equilibria, start=1):
        play = "; ".join(f"{player} " + ", ".join(f"{a} {p:.3g}" for a, p in mix.items() if p)
                         for player, mix in eq.strategies.items())
        worth = ", ".join(f"{v:.3g}" for v in eq.payoffs.values())
        lines.append(f"  {n}. {'pure' if eq.pure else 'mixed'}: {play} -> payoffs {worth}, "
                     f"welfare {eq.welfare:.3g}, "
                     f"{'Pareto optimal' if eq.pareto_optimal else 'Pareto dominated'}")
    for player, table in analysis.best_responses.items():
        lines.append(f"  best replies of {player}: " + "; ".join(
            f"to {others}: {' or '.join(best)}" for others, best in table.items()))
    return "\n".join(lines)
