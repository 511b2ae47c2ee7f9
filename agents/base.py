"""The Agent protocol, its optional capabilities, and what the runtime hands an agent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from agents.model import ModelConfig
from protocols import Envelope, Observation, PolicyTrace, SchemaRegistry

if TYPE_CHECKING:
    from agents.llm.engine import InferenceEngine


@dataclass(frozen=True)
class Route:
    """One message an agent may send: to whom (an agent or `all`) and of which schema."""

    recipient: str
    schema_id: str


@dataclass(frozen=True)
class Utterance:
    """A message an agent wants to send: a typed message of the route's schema."""

    recipient: str
    schema_id: str
    message: BaseModel
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
        engine: the inference engine model-driven agents share (a trainer's, whose
            adapters are learning); None: the process-wide engine of `model`.
    """

    name: str
    routes: Sequence[Route]
    registry: SchemaRegistry
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters_dir: str | None = None
    engine: InferenceEngine | None = None


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


@runtime_checkable
class WeighsActions(Protocol):
    """An agent that can say how likely each legal action is, without choosing one.

    Analyses use it to ask what an agent would have done with another inbox
    (`parley analyze messages`: does the recipient listen?).
    """

    async def action_distribution(self, observation: Observation,
                                  inbox: Sequence[Envelope]) -> list[float]: ...


@runtime_checkable
class RewardObserver(Protocol):
    """An agent that wants each step's reward (for instance for UCB statistics)."""

    def observe_reward(self, reward: float) -> None:
        """Called with the reward of the agent's last step."""
        ...


class ModelUsage(BaseModel):
    """Counters of one agent's model use (summed over agents in a run summary).

    Attributes:
        calls: model calls (each message attempt, each scored action).
        tokens_in: prompt tokens read (plus option tokens when scoring actions).
        tokens_out: tokens generated.
        valid: messages that parsed and validated.
        reasked: re-asks after an invalid message.
        rejected: messages dropped after the last re-ask.
    """

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    valid: int = 0
    reasked: int = 0
    rejected: int = 0

    @classmethod
    def total(cls, usages: Sequence[ModelUsage]) -> ModelUsage:
        """The sum of several agents' counters."""
        totals: Counter[str] = Counter()
        for usage in usages:
            totals.update(usage.model_dump())
        return cls(**totals)


@runtime_checkable
class UsesModel(Protocol):
    """An agent that runs a model and counts its use."""

    model_usage: ModelUsage
