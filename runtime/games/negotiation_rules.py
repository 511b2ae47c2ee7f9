"""Negotiation's rules, apart from play: options, action indices, pools, offers and values.

`NegotiationGame` (runtime/games/negotiation.py) plays episodes over what is
enumerated here once per game: every offer an agent may make and every pool
that can be valued at exactly `total_value`.
"""

from __future__ import annotations

import functools
import itertools
from typing import Literal

from pydantic import Field, model_validator

from runtime.games.text import GameOptions

AGENTS = ("agent_0", "agent_1")
WAIT, ACCEPT, WALK_AWAY = 0, 1, 2
FIRST_OFFER = 3  # index of the first "take ..." action
Split = tuple[int, ...]
# Offers are one action each: more than this many makes the action space unwieldy.
MAX_SPLITS = 4096


@functools.lru_cache(maxsize=4096)
def valuations(counts: Split, total: int) -> list[Split]:
    """Every non-negative integer value vector with `sum(v * counts) == total`."""
    if not counts:
        return [()] if total == 0 else []
    head, rest = counts[0], counts[1:]
    top = total // head if head else 0  # an absent item is worth 0: its value is moot
    return [
        (value, *tail)
        for value in range(top + 1)
        for tail in valuations(rest, total - value * head)
    ]


class NegotiationOptions(GameOptions):
    """Options of the negotiation game (YAML `options:`)."""

    items: list[str] = Field(
        default_factory=lambda: ["book", "hat", "ball"],
        description="Item types, singular nouns with regular plurals.",
    )
    min_count: int = Field(default=1, ge=0, description="Fewest items of a type in a pool.")
    max_count: int = Field(default=3, ge=1, le=9, description="Most items of a type in a pool.")
    total_value: int = Field(default=10, ge=1, description="What the whole pool is worth to each.")
    max_turns: int = Field(default=6, ge=1, description="Turns before the episode truncates.")
    no_deal_reward: float = Field(default=0.0, description="Reward to both without a deal.")
    first: Literal["random", "agent_0", "agent_1"] = Field(
        default="random", description="Who makes the first move."
    )

    @model_validator(mode="after")
    def _check(self) -> NegotiationOptions:
        n = len(self.items)
        if n < 1 or len(set(self.items)) != n or not all(i.strip() for i in self.items):
            raise ValueError("`items` needs at least one distinct, non-empty name")
        if self.min_count > self.max_count:
            raise ValueError(f"min_count={self.min_count} exceeds max_count={self.max_count}")
        if (self.max_count + 1) ** n > MAX_SPLITS:
            raise ValueError("too many splits: lower max_count or use fewer items")
        return self


def offer_splits(options: NegotiationOptions) -> list[Split]:
    """What an offer may take of each item type, in action order (from `FIRST_OFFER` on).

    Fixed by the options, not the pool, so the action space is the same in every
    episode; offers that exceed the drawn pool are masked instead.
    """
    return list(itertools.product(range(options.max_count + 1), repeat=len(options.items)))


def possible_pools(options: NegotiationOptions) -> list[Split]:
    """Every pool within the count bounds that private values can make worth `total_value`.

    Raises:
        ValueError: when no pool can be, so a bad setting fails at construction.
    """
    bounds = range(options.min_count, options.max_count + 1)
    pools = [
        counts
        for counts in itertools.product(bounds, repeat=len(options.items))
        if sum(counts) > 0 and valuations(counts, options.total_value)
    ]
    if not pools:
        raise ValueError(
            f"bad options for game 'negotiation': no pool within counts "
            f"{options.min_count}..{options.max_count} can be worth exactly {options.total_value}"
        )
    return pools
