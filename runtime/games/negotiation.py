"""Negotiation: two agents split a pool of items, each valuing the items privately.

Turn-based inside a ParallelEnv: every step both agents act, but only the turn
holder has real choices; the other's mask allows only `wait` (index 0). An
offer names what its maker takes; the other agent gets the rest.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
import structlog
from pettingzoo import ParallelEnv

from runtime.games.negotiation_rules import (
    ACCEPT,
    AGENTS,
    FIRST_OFFER,
    WAIT,
    WALK_AWAY,
    NegotiationOptions,
    Split,
    offer_splits,
    possible_pools,
    valuations,
)
from runtime.games.text import (
    FloatArray,
    StepResult,
    count_noun,
    join_words,
    parse_options,
    seeded,
)

# The rules' names stay importable from here, where the game has always been imported from.
__all__ = [
    "ACCEPT",
    "AGENTS",
    "FIRST_OFFER",
    "WAIT",
    "WALK_AWAY",
    "NegotiationGame",
    "NegotiationOptions",
    "Split",
    "valuations",
]

log = structlog.get_logger()


class NegotiationGame(ParallelEnv):  # type: ignore[misc]  # pettingzoo ships no type hints
    """Alternating offers over a pool; a deal pays each agent its share at its own values.

    Actions: 0 `wait`, 1 `accept`, 2 `walk away`, then one `take ...` per split
    of the largest pool. Illegal actions (see `infos[agent]["action_mask"]`)
    never crash the game: the turn holder's forfeits its turn, the other's is
    ignored, and `infos[agent]["illegal_action"]` says so.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "parley_negotiation_v0", "render_modes": []}

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(NegotiationOptions, "negotiation", options)
        opts = self.options
        self._splits: list[Split] = offer_splits(opts)
        self._pools = possible_pools(opts)
        width = 3 * len(opts.items) + 3
        self._spaces = {
            agent: (
                gymnasium.spaces.Box(0.0, 1.0, shape=(width,), dtype=np.float32),
                gymnasium.spaces.Discrete(FIRST_OFFER + len(self._splits)),
            )
            for agent in AGENTS
        }
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self._rng = np.random.default_rng()
        self.counts: Split = self._pools[0]
        self.values: dict[str, Split] = {}
        self._turn = 0  # index of the turn holder
        self._turns_taken = 0
        self._offer: Split | None = None  # what the proposer takes
        self._proposer = 0
        self._outcome: str | None = None

    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Pool, own values, own share under the table offer (all scaled), flags, turns left."""
        return self._spaces[agent][0]

    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        """Discrete(3 + (max_count + 1) ** len(items)), the same in every episode."""
        return self._spaces[agent][1]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, dict[str, Any]]]:
        """Draw a pool, private values and who goes first; the same seed draws the same."""
        if seed is not None:
            self._rng = seeded(self, seed, AGENTS)
        self.agents = list(AGENTS)
        self.counts = self._pools[int(self._rng.integers(len(self._pools)))]
        choices = valuations(self.counts, self.options.total_value)
        self.values = {agent: choices[int(self._rng.integers(len(choices)))] for agent in AGENTS}
        first = self.options.first
        self._turn = int(self._rng.integers(2)) if first == "random" else AGENTS.index(first)
        self._turns_taken = 0
        self._offer = None
        self._outcome = None
        return self._observations(), {agent: self._live_info(agent) for agent in AGENTS}

    def step(self, actions: dict[str, int]) -> StepResult:
        """Apply the turn holder's move; a missing action counts as `wait`."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        chosen = {agent: self._checked_action(actions, agent) for agent in AGENTS}
        illegal = {agent: not self.action_mask(agent)[chosen[agent]] for agent in AGENTS}
        holder = AGENTS[self._turn]
        move = WAIT if illegal[holder] else chosen[holder]
        rewards = dict.fromkeys(AGENTS, 0.0)
        if move == ACCEPT:
            rewards = self._deal()
        elif move == WALK_AWAY:
            rewards = self._no_deal("walked_away")
        elif move >= FIRST_OFFER:
            self._offer, self._proposer = self._splits[move - FIRST_OFFER], self._turn
        self._turns_taken += 1
        truncated = self._outcome is None and self._turns_taken >= self.options.max_turns
        if truncated:
            rewards = self._no_deal("out_of_turns")
        ended = self._outcome is not None
        if not ended:
            self._turn = 1 - self._turn
        infos = {agent: self._end_info() if ended else self._live_info(agent) for agent in AGENTS}
        for agent in AGENTS:
            if illegal[agent]:
                infos[agent]["illegal_action"] = True
        observations = self._observations()
        if ended:
            self.agents = []
        return (
            observations,
            rewards,
            dict.fromkeys(AGENTS, ended and not truncated),
            dict.fromkeys(AGENTS, truncated),
            infos,
        )

    def action_names(self, agent: str) -> list[str]:
        """`wait`, `accept`, `walk away`, then `take B books H hats L balls` per split."""
        self._index(agent)
        return ["wait", "accept", "walk away", *(self._take_name(s) for s in self._splits)]

    def action_mask(self, agent: str) -> list[bool]:
        """Legal actions now: only `wait` off turn; on turn, no `wait` and no oversized split."""
        me = self._index(agent)
        size = FIRST_OFFER + len(self._splits)
        if self._outcome is not None or me != self._turn:
            return [True] + [False] * (size - 1)
        offers = [
            all(t <= c for t, c in zip(split, self.counts, strict=True)) for split in self._splits
        ]
        return [False, self._offer is not None, True, *offers]

    def text_observation(self, agent: str) -> str:
        """Pool, own values (never the other's), the offer on the table and whose turn it is."""
        me = self._index(agent)
        other = AGENTS[1 - me]
        mine = self.values[agent]
        worth = join_words(
            [f"{item} {v}" for item, v in zip(self.options.items, mine, strict=True)]
        )
        lines = [
            f"You are {agent}, splitting a pool of items with {other}: "
            f"{self._items_text(self.counts)}.",
            f"Your value per item: {worth}; the whole pool is worth "
            f"{self.options.total_value} to you. {other} has private values of its own.",
            f"Turn {min(self._turns_taken + 1, self.options.max_turns)} of "
            f"{self.options.max_turns}; with no deal by the end, or if one walks away, each gets "
            f"{self.options.no_deal_reward:g}. An offer says what its maker takes; the other "
            "gets the rest.",
            self._table_text(me),
        ]
        if self._outcome is not None:
            lines.append(f"The negotiation is over ({self._outcome.replace('_', ' ')}).")
        elif me == self._turn:
            lines.append("Your turn: make an offer, accept the offer on the table, or walk away.")
        else:
            lines.append(f"It is {other}'s turn; you wait.")
        return "\n".join(lines)

    def observation(self, agent: str) -> FloatArray:
        """Numeric view, each part scaled to [0, 1]."""
        me = self._index(agent)
        top, total = self.options.max_count, self.options.total_value
        share = self._share(me) if self._offer is not None else (0,) * len(self.counts)
        flags = [
            float(self._offer is not None),
            float(self._outcome is None and me == self._turn),
            (self.options.max_turns - self._turns_taken) / self.options.max_turns,
        ]
        parts = [np.array(self.counts) / top, np.array(self.values[agent]) / total]
        return np.concatenate([*parts, np.array(share) / top, np.array(flags)]).astype(np.float32)

    def split_action(self, take: Split) -> int:
        """The action index of the offer `take` (what the maker takes, per item type)."""
        return FIRST_OFFER + self._splits.index(tuple(take))

    def _share(self, me: int) -> Split:
        """What agent `me` gets under the offer on the table."""
        assert self._offer is not None
        if me == self._proposer:
            return self._offer
        return tuple(c - t for c, t in zip(self.counts, self._offer, strict=True))

    def _deal(self) -> dict[str, float]:
        self._outcome = "deal"
        log.debug("negotiation_deal", counts=self.counts, take=self._offer, turns=self._turns_taken)
        return {
            agent: float(np.dot(self.values[agent], self._share(i)))
            for i, agent in enumerate(AGENTS)
        }

    def _no_deal(self, outcome: str) -> dict[str, float]:
        self._outcome = outcome
        log.debug("negotiation_no_deal", outcome=outcome, turns=self._turns_taken)
        return dict.fromkeys(AGENTS, self.options.no_deal_reward)

    def _live_info(self, agent: str) -> dict[str, Any]:
        return {"action_mask": self.action_mask(agent)}

    def _end_info(self) -> dict[str, Any]:
        return {"success": self._outcome == "deal", "outcome": self._outcome}

    def _table_text(self, me: int) -> str:
        if self._offer is None:
            return "No offer is on the table yet."
        share = self._share(me)
        value = int(np.dot(self.values[AGENTS[me]], share))
        if me == self._proposer:
            return (
                f"On the table: your offer to take {self._items_text(share)} "
                f"(worth {value} to you); {AGENTS[1 - me]} would get the rest."
            )
        return (
            f"On the table: {AGENTS[1 - me]} offers to take {self._items_text(self._offer)}, "
            f"which leaves you {self._items_text(share)} (worth {value} to you)."
        )

    def _items_text(self, split: Split) -> str:
        return join_words(
            [count_noun(n, item) for n, item in zip(split, self.options.items, strict=True)]
        )

    def _take_name(self, split: Split) -> str:
        words = [count_noun(n, item) for n, item in zip(split, self.options.items, strict=True)]
        return "take " + " ".join(words)

    def _checked_action(self, actions: dict[str, int], agent: str) -> int:
        action = int(actions.get(agent, WAIT))
        size = FIRST_OFFER + len(self._splits)
        if not 0 <= action < size:
            raise ValueError(f"{agent} action {action} is outside Discrete({size})")
        return action

    def _index(self, agent: str) -> int:
        if agent not in AGENTS:
            raise KeyError(f"unknown agent {agent!r}; agents: {list(AGENTS)}")
        return AGENTS.index(agent)

    def _observations(self) -> dict[str, FloatArray]:
        return {agent: self.observation(agent) for agent in AGENTS}
