"""Agents that tests plug in by import path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from agents.base import AgentContext, Choice, Utterance
from protocols import Action, Envelope, Observation


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


class _Faulty:
    """Base of the faulty plug-ins below: plays the last legal action, says nothing."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.options = dict(context.options)

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        return Choice(observation.legal_actions[-1])


class NegativeChoiceAgent(_Faulty):
    """Chooses action -1, which no action_names index can be."""

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        return Choice(-1)


class BareIntAgent(_Faulty):
    """Returns a bare int from `act` instead of a Choice."""

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        return observation.legal_actions[-1]  # type: ignore[return-value]  # the fault


class DictSpeakerAgent(_Faulty):
    """Returns a dict from `speak` instead of a list of Utterance; acts correctly."""

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return {"to": "all", "text": "hello"}  # type: ignore[return-value]  # the fault


class ActionSpeakerAgent(_Faulty):
    """Tries to say an Action to all, which would pass for an action on the bus."""

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return [Utterance("all", "Action@1", Action(action=0))]


class RaisingSpeakerAgent(_Faulty):
    """Raises in `speak`; acts correctly."""

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        raise RuntimeError("speak broke")


class BlockingAgent(_Faulty):
    """Blocks the event loop with `time.sleep(options.sleep_s)` in its first `act`."""

    def __init__(self, context: AgentContext) -> None:
        super().__init__(context)
        self.sleep_s = float(str(self.options["sleep_s"]))
        self.acted = 0

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        self.acted += 1
        if self.acted == 1:
            time.sleep(self.sleep_s)  # the fault: synchronous code inside a coroutine
        return await super().act(observation, inbox)


class SilentOnceAgent(_Faulty):
    """Speaks only after `options.silent_s` (asyncio) in its `options.at_turn`-th step."""

    def __init__(self, context: AgentContext) -> None:
        super().__init__(context)
        self.silent_s = float(str(self.options["silent_s"]))
        self.at_turn = int(str(self.options["at_turn"]))
        self.turn = 0

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        self.turn += 1
        if self.turn == self.at_turn:
            await asyncio.sleep(self.silent_s)
        return []
