"""Agents without a model: a scripted agent for tests and demos, a code-book speaker that
already knows a convention, and a random one."""

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


class CodeBookOptions(BaseModel):
    """Options of `type: codebook`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    codes: dict[str, dict[str, JsonValue]] = Field(
        min_length=1, description="What the agent alone knows (its observation's `private` "
        "part, e.g. a speaker's target) -> the payload it sends then.")
    action: int | None = Field(default=None, description="Action to play (default: first "
                               "legal).")


class CodeBookAgent:
    """Knows a convention: sends each route the payload its private knowledge maps to.

    A partner that already speaks the code, for listeners to learn from (social learning,
    a fixed-speaker baseline). Payloads are checked against every route's schema when the
    agent is built; knowledge the book lacks raises (the runtime counts it `failed`).
    """

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.options = CodeBookOptions.model_validate(dict(context.options))
        self._book = {meaning: [Utterance(r.recipient, r.schema_id,
                                          context.registry.validate(r.schema_id, payload))
                                for r in context.routes]
                      for meaning, payload in self.options.codes.items()}

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        meaning = observation.private
        if meaning not in self._book:
            raise ValueError(f"{self.name}: no code for {meaning!r}; the book has "
                             f"{sorted(self._book)}")
        return list(self._book[meaning])

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        legal = observation.legal_actions
        return Choice(self.options.action if self.options.action in legal else legal[0])
