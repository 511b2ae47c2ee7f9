"""What agents of an iterated two-player matrix game play, and how exploitable it is.

The empirical strategy of an agent is its memory-one strategy as counted from play: the
share of each action in round one and after each (own, other's) last round. States an
agent never met fall back on its overall action shares (said in `unvisited`), so a best
response is not credited for exploiting a guess.

Against a memory-one opponent the last round is all a best response needs to know, so
its value over the game's finite rounds is exact by backward induction (a small MDP,
no equilibrium solving); the joint policy's own values are exact too (a Markov chain on
the last round). NashConv is the sum over players of what a best response would gain,
and exploitability its mean (OpenSpiel's conventions); 0 at a Nash equilibrium.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from agents.strategies import MemoryOne, last_round
from protocols import Action
from training.trajectory import Trajectories

Table = npt.NDArray[np.float64]  # payoffs[a_0, a_1, player]
OPENING = "opening"


def state_name(last: tuple[int, int] | None, names: list[str]) -> str:
    """`opening`, or `after you X, they Y`."""
    return OPENING if last is None else f"after you {names[last[0]]}, they {names[last[1]]}"


class EmpiricalStrategy(BaseModel):
    """One agent's memory-one strategy as counted from play."""

    agent: str
    decisions: int
    strategy: dict[str, dict[str, float]] = Field(description="state -> action -> share.")
    counts: dict[str, int] = Field(description="state -> decisions seen there.")
    unvisited: list[str] = Field(description="States never met: the overall shares stand in.")

    def memory_one(self, names: list[str]) -> MemoryOne:
        """The strategy as arrays, in the order of the game's action `names`."""
        n = len(names)
        opening = np.array([self.strategy[OPENING][a] for a in names])
        after = np.array([[[self.strategy[state_name((i, j), names)][a] for a in names]
                           for j in range(n)] for i in range(n)])
        return MemoryOne(opening, after)


def empirical_strategies(trajectories: Trajectories,
                         names: list[str]) -> dict[str, EmpiricalStrategy]:
    """Each agent's memory-one strategy from the actions it took (by its observation).

    Raises ValueError when a step offered other actions than the game's `names`.
    """
    counts: dict[str, dict[str, npt.NDArray[np.float64]]] = defaultdict(dict)
    for step in trajectories.steps:
        if step.action is None:
            continue
        if step.observation.action_names != names:
            raise ValueError(f"{step.agent} was offered {step.observation.action_names}, not "
                             f"this game's actions {names}: play of another game?")
        state = state_name(last_round(step.observation), names)
        seen = counts[step.agent].setdefault(state, np.zeros(len(names)))
        action = step.action.payload
        assert isinstance(action, Action)  # AgentStep.action holds Action envelopes only
        seen[action.action] += 1
    return {agent: _strategy(agent, by_state, names) for agent, by_state in sorted(counts.items())}


def _strategy(agent: str, by_state: dict[str, npt.NDArray[np.float64]],
              names: list[str]) -> EmpiricalStrategy:
    n = len(names)
    overall = np.sum(list(by_state.values()), axis=0)
    states = [OPENING, *(state_name((i, j), names) for i in range(n) for j in range(n))]
    shares: dict[str, dict[str, float]] = {}
    for state in states:
        seen = by_state.get(state, overall)
        probs = seen / seen.sum()
        shares[state] = dict(zip(names, map(float, probs), strict=True))
    return EmpiricalStrategy(
        agent=agent, decisions=int(overall.sum()), strategy=shares,
        counts={state: int(by_state[state].sum()) for state in states if state in by_state},
        unvisited=[state for state in states if state not in by_state])


def expected_returns(first: MemoryOne, second: MemoryOne, payoffs: Table, rounds: int) -> Table:
    """Each player's exact expected total over `rounds` when `first` meets `second`."""
    joint = np.outer(first.opening, second.opening)  # P(a_0, a_1) this round
    total = np.einsum("ij,ijp->p", joint, payoffs)
    for _ in range(rounds - 1):
        # second sees the last round from its side: (its own action, first's)
        joint = np.einsum("ij,ijk,jil->kl", joint, first.after, second.after)
        total = total + np.einsum("ij,ijp->p", joint, payoffs)
    return np.asarray(total, dtype=np.float64)


def best_response_value(opponent: MemoryOne, payoffs: Table, me: int, rounds: int) -> float:
    """The most player `me` can expect over `rounds` against `opponent` (backward induction).

    The state is the last round from my side, (mine, theirs); the opponent plays
    `after[theirs, mine]`. `value[mine, theirs]` is the best total from the next round on.
    """
    mine = payoffs[..., me] if me == 0 else payoffs[..., me].T  # mine[my action, theirs]
    reply = opponent.after.transpose(1, 0, 2)  # reply[my last, their last, their next]
    value = np.zeros_like(mine)
    for _ in range(rounds - 1):
        value = np.einsum("stb,ab->sta", reply, mine + value).max(axis=-1)
    return float((np.einsum("b,ab->a", opponent.opening, mine + value)).max())


class Exploitability(BaseModel):
    """How far a two-player joint memory-one policy is from a Nash equilibrium."""

    values: dict[str, float] = Field(description="Each player's exact expected return.")
    best_responses: dict[str, float] = Field(
        description="What a best response to the other would get, per player.")
    nash_conv: float = Field(description="Sum over players of best response - value.")
    exploitability: float = Field(description="NashConv / number of players.")


def exploitability(strategies: dict[str, MemoryOne], players: list[str], payoffs: Table,
                   rounds: int) -> Exploitability:
    """Values, best-response values, NashConv and exploitability of `strategies`."""
    first, second = (strategies[p] for p in players)
    values = expected_returns(first, second, payoffs, rounds)
    best = [best_response_value(second, payoffs, 0, rounds),
            best_response_value(first, payoffs, 1, rounds)]
    conv = float(sum(b - v for b, v in zip(best, values, strict=True)))
    return Exploitability(values=dict(zip(players, map(float, values), strict=True)),
                          best_responses=dict(zip(players, best, strict=True)),
                          nash_conv=conv, exploitability=conv / len(players))
