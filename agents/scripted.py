"""Agents without a model: a scripted agent for tests and demos, and a random one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agents.base import AgentContext, Choice, Utterance
from protocols import Envelope, Observation, SchemaRegistry


class ScriptedMessage(BaseModel):
    """A fixed message the scripted agent sends every step."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    recipient: str = Field(alias="to")
    message: str = Field(description="Schema id, Name@version, or Name for the latest version.")
    payload: dict[str, JsonValue]


class ScriptedOptions(BaseModel):
    """Options of `type: scripted`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: list[int] = Field(
        default_factory=list, description="Actions to play in turn (cycled); illegal ones skipped."
    )
    policy: Literal["first", "last"] = Field(
        default="first", description="When `actions` is empty or illegal: first or last legal."
    )
    messages: list[ScriptedMessage] = Field(default_factory=list)
    delay_s: float = Field(default=0.0, ge=0, description="Think this long before acting.")
    fail_at_step: int | None = Field(
        default=None, description="Raise at this step: for testing how the runtime copes."
    )


def _utterance(scripted: ScriptedMessage, registry: SchemaRegistry) -> Utterance:
    """A scripted message, typed once when the agent is built (a bad one fails the build)."""
    name = scripted.message
    schema_id = name if "@" in name else registry.latest(name)
    return Utterance(scripted.recipient, schema_id, registry.validate(schema_id, scripted.payload))


class ScriptedAgent:
    """Plays a fixed sequence of actions and sends fixed messages."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.options = ScriptedOptions.model_validate(dict(context.options))
        self._utterances = [_utterance(m, context.registry) for m in self.options.messages]
        self._turn = 0

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return list(self._utterances)

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        if self.options.fail_at_step is not None and self._turn == self.options.fail_at_step:
            self._turn += 1
            raise RuntimeError(f"scripted failure at step {self.options.fail_at_step}")
        if self.options.delay_s:
            await asyncio.sleep(self.options.delay_s)
        legal = observation.legal_actions
        planned = self.options.actions
        self._turn += 1
        if planned and (action := planned[(self._turn - 1) % len(planned)]) in legal:
            return Choice(action)
        return Choice(legal[0] if self.options.policy == "first" else legal[-1])


class RandomOptions(BaseModel):
    """Options of `type: random`."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RandomAgent:
    """Uniform over the legal actions, seeded; says nothing."""

    def __init__(self, context: AgentContext) -> None:
        RandomOptions.model_validate(dict(context.options))
        self.name = context.name
        self._rng = random.Random(context.seed)

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        return []

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        return Choice(self._rng.choice(observation.legal_actions))
