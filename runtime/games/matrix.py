"""Iterated two-player matrix games: prisoner's dilemma, coordination, stag hunt,
rock-paper-scissors, or any table given in the options."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
import numpy.typing as npt
import structlog
from pettingzoo import ParallelEnv
from pydantic import Field, model_validator

from runtime.games.text import FloatArray, GameOptions, StepResult, one_hot, parse_options

log = structlog.get_logger()

PLAYERS = ("player_0", "player_1")

# name -> (title, actions, payoff[row][col] = (row player's reward, column player's reward))
PRESETS: dict[str, tuple[str, list[str], list[list[tuple[float, float]]]]] = {
    "prisoners_dilemma": (
        "prisoner's dilemma",
        ["cooperate", "defect"],
        [[(3, 3), (0, 5)], [(5, 0), (1, 1)]],
    ),
    "coordination": ("coordination game", ["left", "right"], [[(1, 1), (0, 0)], [(0, 0), (1, 1)]]),
    "stag_hunt": ("stag hunt", ["stag", "hare"], [[(4, 4), (0, 3)], [(3, 0), (3, 3)]]),
    "rock_paper_scissors": (
        "rock-paper-scissors",
        ["rock", "paper", "scissors"],
        [[(0, 0), (-1, 1), (1, -1)], [(1, -1), (0, 0), (-1, 1)], [(-1, 1), (1, -1), (0, 0)]],
    ),
}


class Payoffs(GameOptions):
    """Either a `preset` or explicit `actions` (shared by both players) and a `payoff` table."""

    preset: str | None = Field(default=None, description=f"One of {sorted(PRESETS)}.")
    actions: list[str] | None = Field(default=None, description="Action names, both players.")
    payoff: list[list[tuple[float, float]]] | None = Field(
        default=None, description="payoff[a0][a1] = [reward of player_0, reward of player_1]."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Payoffs:
        explicit = self.actions is not None or self.payoff is not None
        if (self.preset is None) == (not explicit):
            raise ValueError("give either `preset` or both `actions` and `payoff`")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {sorted(PRESETS)}")
        if explicit:
            if self.actions is None or self.payoff is None:
                raise ValueError("`actions` and `payoff` go together")
            n = len(self.actions)
            if n < 2 or len(set(self.actions)) != n or not all(a.strip() for a in self.actions):
                raise ValueError("`actions` needs at least two distinct, non-empty names")
            if len(self.payoff) != n or any(len(row) != n for row in self.payoff):
                raise ValueError(f"`payoff` must be {n} x {n} pairs, one row per player_0 action")
        return self

    def resolve(self) -> tuple[str, list[str], npt.NDArray[np.float64]]:
        """Title, action names and the payoff array of shape (n, n, 2)."""
        if self.preset is not None:
            title, actions, table = PRESETS[self.preset]
        else:
            assert self.actions is not None and self.payoff is not None  # checked above
            title, actions, table = "matrix game", self.actions, self.payoff
        return title, list(actions), np.asarray(table, dtype=np.float64)


class MatrixOptions(GameOptions):
    """Options of the iterated matrix game (YAML `options:`)."""

    payoffs: Payoffs = Field(
        default_factory=lambda: Payoffs(preset="prisoners_dilemma"),
        description="`{preset: name}`, a preset name, or `{actions: [...], payoff: [...]}`; "
        "`actions` and `payoff` may also sit at the top level of the options.",
    )
    rounds: int = Field(default=10, ge=1, description="Rounds (steps) per episode.")
    history: int = Field(default=5, ge=0, description="Recent rounds shown in the text.")

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("payoffs"), str):
            data["payoffs"] = {"preset": data["payoffs"]}
        top = {key: data.pop(key) for key in ("actions", "payoff") if key in data}
        if top:
            if "payoffs" in data:
                raise ValueError("give `actions`/`payoff` either at the top level or in `payoffs`")
            data["payoffs"] = top
        return data


class MatrixGame(ParallelEnv):  # type: ignore[misc]  # pettingzoo ships no type hints
    """Both players choose at once each round and get the table's rewards for that round.

    At the end, `success` (omitted for constant-sum games, where no outcome is
    better for both) says whether the players reached a welfare-maximising
    cell, e.g. mutual cooperation, in at least half of the rounds.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "parley_matrix_v0", "render_modes": []}

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(MatrixOptions, "matrix", options)
        self.title, self._actions, self._table = self.options.payoffs.resolve()
        n = len(self._actions)
        self.possible_agents = list(PLAYERS)
        self.agents: list[str] = []
        self._spaces = {
            agent: (
                gymnasium.spaces.Box(0.0, 1.0, shape=(2 * n + 1,), dtype=np.float32),
                gymnasium.spaces.Discrete(n),
            )
            for agent in PLAYERS
        }
        welfare = self._table.sum(axis=2)
        self._best_welfare = float(welfare.max())
        self._constant_sum = bool(np.allclose(welfare, welfare.flat[0]))
        self._history: list[tuple[int, int]] = []
        self._totals = np.zeros(2)

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Own last action, the other's last action (one-hot, zeros before round 1), progress."""
        return self._spaces[agent][0]

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Discrete(n), one index per action name."""
        return self._spaces[agent][1]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, dict[str, Any]]]:
        """Start an episode. The game itself is deterministic; the seed seeds the action spaces."""
        if seed is not None:
            for index, agent in enumerate(PLAYERS):
                self.action_space(agent).seed(seed + index)
        self.agents = list(PLAYERS)
        self._history = []
        self._totals = np.zeros(2)
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]) -> StepResult:
        """Play one round: both players' actions are required."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        moves = tuple(self._checked_action(actions, agent) for agent in PLAYERS)
        first, second = moves
        rewards = self._table[first, second]
        self._totals += rewards
        self._history.append((first, second))
        done = len(self._history) >= self.options.rounds
        infos: dict[str, dict[str, Any]] = {
            agent: {"round": len(self._history)} for agent in PLAYERS
        }
        if done:
            self._finish(infos)
        observations = self._observations()
        self.agents = [] if done else list(PLAYERS)
        return (
            observations,
            {agent: float(rewards[i]) for i, agent in enumerate(PLAYERS)},
            dict.fromkeys(PLAYERS, done),
            dict.fromkeys(PLAYERS, False),
            infos,
        )

    def action_names(self, agent: str) -> list[str]:
        """The table's action names (the same for both players)."""
        self._index(agent)
        return list(self._actions)

    def text_observation(self, agent: str) -> str:
        """The payoff table, recent rounds and scores from this player's side."""
        me = self._index(agent)
        played = len(self._history)
        lines = [
            f"You are {agent} in a repeated {self.title} with one other player, "
            f"round {min(played + 1, self.options.rounds)} of {self.options.rounds}. "
            "Each round you both choose at the same time, without seeing the other's choice.",
            "Payoffs (you get, they get): " + self._payoff_text(me) + ".",
        ]
        recent = self._history[-self.options.history :] if self.options.history else []
        if recent:
            start = played - len(recent) + 1
            names = [(self._actions[p[me]], self._actions[p[1 - me]]) for p in recent]
            rounds = [f"round {start + i}: you {a}, they {b}" for i, (a, b) in enumerate(names)]
            lines.append("Recent rounds: " + "; ".join(rounds) + ".")
        lines.append(f"Score so far: you {self._totals[me]:g}, they {self._totals[1 - me]:g}.")
        lines.append("Choose your action for this round.")
        return "\n".join(lines)

    def observation(self, agent: str) -> FloatArray:
        """Numeric view: last actions (own first) and the fraction of rounds played."""
        me = self._index(agent)
        n = len(self._actions)
        last = self._history[-1] if self._history else (-1, -1)
        progress = np.array([len(self._history) / self.options.rounds], dtype=np.float32)
        return np.concatenate([one_hot(last[me], n), one_hot(last[1 - me], n), progress])

    def payoff(self, first: int, second: int) -> tuple[float, float]:
        """Rewards (player_0, player_1) when they play actions `first` and `second`."""
        return float(self._table[first, second, 0]), float(self._table[first, second, 1])

    def _payoff_text(self, me: int) -> str:
        cells = []
        for mine, my_name in enumerate(self._actions):
            for theirs, their_name in enumerate(self._actions):
                pair = (mine, theirs) if me == 0 else (theirs, mine)
                gain = self._table[pair[0], pair[1]]
                cells.append(f"{my_name} vs {their_name}: {gain[me]:g}, {gain[1 - me]:g}")
        return "; ".join(cells)

    def _finish(self, infos: dict[str, dict[str, Any]]) -> None:
        """Add end-of-episode facts; `success` only where some outcome is better for both."""
        if self._constant_sum:
            return
        efficient = sum(
            bool(np.isclose(self._table[a, b].sum(), self._best_welfare)) for a, b in self._history
        )
        rate = efficient / len(self._history)
        for info in infos.values():
            info["efficient_rate"] = rate
            info["success"] = rate >= 0.5
        log.debug("matrix_episode_end", efficient_rate=rate, totals=self._totals.tolist())

    def _checked_action(self, actions: dict[str, int], agent: str) -> int:
        if agent not in actions:
            raise ValueError(f"matrix game needs an action from every player; {agent} gave none")
        action = int(actions[agent])
        if not 0 <= action < len(self._actions):
            raise ValueError(f"{agent} action {action} is outside Discrete({len(self._actions)})")
        return action

    def _index(self, agent: str) -> int:
        if agent not in PLAYERS:
            raise KeyError(f"unknown agent {agent!r}; agents: {list(PLAYERS)}")
        return PLAYERS.index(agent)

    def _observations(self) -> dict[str, FloatArray]:
        return {agent: self.observation(agent) for agent in self.agents}
