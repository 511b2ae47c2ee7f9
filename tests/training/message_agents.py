"""Agents whose messages' information is known, plugged in by import path."""

from __future__ import annotations

from collections.abc import Sequence

from agents.base import AgentContext, Choice, Utterance
from protocols import Envelope, Observation

CODE_BOOK = {"red": "zub", "blue": "kep", "green": "mov"}


class CodeBookListener:
    """Picks the object its message's code word stands for; option `deaf`: uniform."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.deaf = bool(dict(context.options).get("deaf", False))

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def action_distribution(self, observation: Observation,
                                  inbox: Sequence[Envelope]) -> list[float]:
        legal = observation.legal_actions
        meant = {code: colour for colour, code in CODE_BOOK.items()}
        codes = [env.payload.model_dump().get("code") for env in inbox]
        named = [i for i, a in enumerate(legal) if observation.action_names[a] in
                 {meant.get(str(code)) for code in codes}]
        if self.deaf or len(named) != 1:
            return [1.0 / len(legal)] * len(legal)
        return [1.0 if i == named[0] else 0.0 for i in range(len(legal))]

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        probs = await self.action_distribution(observation, inbox)
        return Choice(observation.legal_actions[probs.index(max(probs))])
