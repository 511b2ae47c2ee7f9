"""Causal listening: does the recipient's choice change when its message does?

Counting I(message; action) mixes listening with everything else the recipient sees.
The intervention the literature recommends (Lowe et al. 2019, "causal influence of
communication") asks the recipient's own policy: its action distribution with the real
message and with the message of another exchange of the same channel (a seeded
permutation), everything else as it was. The mean total variation between the two is
0 for a recipient that ignores messages and approaches 1 for one that follows them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from agents.base import WeighsActions
from protocols import Envelope
from training.analysis.messages import Exchange

LISTENING_SAMPLE = 200
"""Exchanges asked about per channel (two model calls each), chosen by the seed."""


async def causal_listening(channel: Sequence[Exchange], recipient: WeighsActions,
                           seed: int = 0) -> float | None:
    """Mean total variation of the recipient's action distribution, real vs shuffled message.

    None when fewer than two exchanges had a recipient with a real choice to make.
    """
    heard = [e for e in channel if e.heard_by is not None
             and len(e.heard_by.observation.legal_actions) > 1]
    if len(heard) < 2:
        return None
    rng = random.Random(seed)
    heard = rng.sample(heard, min(len(heard), LISTENING_SAMPLE))
    others = rng.sample(heard, len(heard))
    distances = []
    for exchange, other in zip(heard, others, strict=True):
        step = exchange.heard_by
        assert step is not None  # filtered above
        real = await recipient.action_distribution(step.observation, step.inbox)
        swapped = _swap(step.inbox, exchange.said, other.said)
        shuffled = await recipient.action_distribution(step.observation, swapped)
        distances.append(0.5 * sum(abs(p - q) for p, q in zip(real, shuffled, strict=True)))
    return sum(distances) / len(distances)


def _swap(inbox: Sequence[Envelope], real: Envelope, other: Envelope) -> tuple[Envelope, ...]:
    """The inbox with the real message's payload replaced by the other's."""
    replaced = real.model_copy(update={"payload": other.payload})
    return tuple(replaced if env.id == real.id else env for env in inbox)
