"""The Agent protocol and what the runtime hands an agent when it builds one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from protocols import Envelope, Observation, PolicyTrace, SchemaRegistry


class ModelConfig(BaseModel):
    """Which language model LLM agents use, and where it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        default="smollm2-135m-instruct",
        description="`smollm2-135m-instruct` (shipped offline), a hub id, a local folder, "
        "or a .gguf file.",
    )
    dtype: str = Field(default="float32", description="torch dtype: float32, bfloat16, float16.")
    device: str = Field(default="auto", description="cpu, cuda, or auto (cuda when present).")


@dataclass(frozen=True)
class Route:
    """One message an agent may send: to whom (an agent or `all`) and of which schema."""

    recipient: str
    schema_id: str


@dataclass(frozen=True)
class Utterance:
    """A message an agent wants to send; the host wraps it in an envelope."""

    recipient: str
    schema_id: str
    payload: dict[str, JsonValue]
    trace: PolicyTrace | None = None


@dataclass(frozen=True)
class Choice:
    """An agent's action, with the policy trace when a model chose it."""

    action: int
    trace: PolicyTrace | None = None


@dataclass(frozen=True)
class AgentContext:
    """Everything an agent is built from.

    Attributes:
        name: the agent id in the environment.
        routes: the messages this agent may send.
        registry: every message model of the run.
        options: the agent's `options:` from the YAML, for the agent to validate.
        seed: seed for the agent's own randomness.
        model: the scenario's model settings, for LLM agents.
        adapters_dir: trained LoRA adapters to play, if given.
    """

    name: str
    routes: Sequence[Route]
    registry: SchemaRegistry
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters_dir: str | None = None


@runtime_checkable
class Agent(Protocol):
    """An asynchronous agent: observation and inbox in, messages and an action out.

    Each step has two phases. In `speak` every acting agent may send messages
    (along its routes); once all have spoken, `act` is called with an inbox that
    holds the messages of this step, so a listener can use what it was just told.
    The inbox holds only envelopes addressed to this agent or to all.
    """

    name: str

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        """Messages to send this step (may be empty)."""
        ...

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        """The action for this step: one of `observation.legal_actions`."""
        ...
