"""Exploration over a legal action set: epsilon-greedy mixing, UCB statistics, sampling.

An untrained model's preferences over short option words are extremely peaked,
so learning a convention needs exploration. Every helper here returns or
consumes an explicit probability vector: the log-prob a policy trace records is
always that of the distribution the action was actually sampled from.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


def mix_uniform(probs: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Epsilon-greedy mixture: `(1 - epsilon) * probs + epsilon / n`.

    Args:
        probs: a probability vector over the legal set (may carry gradients).
        epsilon: the weight of the uniform distribution, in [0, 1].
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if epsilon == 0.0:
        return probs
    return (1.0 - epsilon) * probs + epsilon / probs.shape[-1]


def one_hot(index: int, size: int) -> torch.Tensor:
    """A float64 distribution with all its mass on `index`."""
    probs = torch.zeros(size, dtype=torch.float64)
    probs[index] = 1.0
    return probs


def sample_index(probs: torch.Tensor, rng: random.Random) -> int:
    """Draw one index from `probs` with the agent's own seeded RNG (inverse CDF).

    Only indices with positive probability can come out, whatever rounding does
    to the cumulative sum.
    """
    values = [float(p) for p in probs.detach().cpu().tolist()]
    u = rng.random() * sum(values)
    cumulative = 0.0
    for index, p in enumerate(values):
        cumulative += p
        if p > 0.0 and u < cumulative:
            return index
    return max(i for i, p in enumerate(values) if p > 0.0)


@dataclass
class UCBStats:
    """Per-action visit counts and mean rewards for UCB1 over a repeated game.

    The statistics are keyed by action index (not position in the legal set) and
    persist across episodes: in a repeated game every round faces the same choice.
    """

    counts: dict[int, int] = field(default_factory=dict)
    totals: dict[int, float] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Number of rewards observed so far."""
        return sum(self.counts.values())

    def update(self, action: int, reward: float) -> None:
        """Record the reward that followed playing `action`."""
        self.counts[action] = self.counts.get(action, 0) + 1
        self.totals[action] = self.totals.get(action, 0.0) + reward

    def scores(self, legal: Sequence[int], c: float) -> list[float]:
        """UCB1 score `mean + c * sqrt(ln(rounds) / count)`; untried actions score +inf."""
        log_rounds = math.log(max(self.rounds, 1))
        out = []
        for action in legal:
            n = self.counts.get(action, 0)
            if n == 0:
                out.append(math.inf)
            else:
                out.append(self.totals[action] / n + c * math.sqrt(log_rounds / n))
        return out

    def choose(self, legal: Sequence[int], c: float, tie_break: Sequence[float]) -> int:
        """Position in `legal` of the highest UCB score.

        Ties (all untried actions score +inf) go to the higher `tie_break`
        value, the model's own preference, so the model still orders exploration.
        """
        ucb = self.scores(legal, c)
        return max(range(len(legal)), key=lambda i: (ucb[i], tie_break[i], -i))
