"""Agents that tests plug in by import path."""

from __future__ import annotations

from collections.abc import Sequence

from agents.base import AgentContext, Choice, Utterance
from protocols import Envelope, Observation


class LastLegalAgent:
    """A custom agent class, as a user would write one: always the last legal action."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.seen: list[Observation] = []

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        self.seen.append(observation)
        return Choice(observation.legal_actions[-1])


class FirstActionAgent:
    """Always action 0, legal or not: for testing how the runner replaces illegal actions."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        return Choice(0)


class NotAnAgent:
    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
