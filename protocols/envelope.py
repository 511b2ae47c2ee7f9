"""The Envelope: everything that happens in a run is one of these on a bus."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from protocols.messages import Kind

BROADCAST = "all"
RUNNER = "runner"


class PolicyTrace(BaseModel):
    """What a model generated, with enough to recompute its log-probabilities.

    Travels with the envelope so that training also works on runs whose agents
    lived in other processes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_ids: list[int] = Field(description="Token ids of the prompt the model saw.")
    token_ids: list[int] = Field(description="Token ids the model generated.")
    logprobs: list[float] = Field(description="Log-prob of each token under the sampled dist.")
    constraint: str | None = Field(
        default=None, description="JSON Schema the decoding was constrained to, if any."
    )
    legal: list[int] | None = Field(default=None, description="Legal action set, for actions.")
    temperature: float = 1.0
    top_p: float = 1.0
    epsilon: float = Field(default=0.0, description="Epsilon-greedy mix over the legal set.")
    policy: Literal["sample", "ucb"] = Field(
        default="sample", description="ucb: chosen by UCB statistics, not by the model."
    )
    adapter: str | None = None


def _new_id() -> str:
    return uuid.uuid4().hex


class Envelope(BaseModel):
    """A typed, addressed message on the bus.

    `schema_id` names the payload's model as `Name@version`; the bus validates the
    payload against it. `recipient` is an agent id, `runner`, or `all`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(default_factory=_new_id)
    run: str
    episode: int = Field(ge=0)
    step: int = Field(ge=0)
    sender: str = Field(min_length=1, pattern=r"^[^/#+]+$")
    recipient: str = Field(min_length=1, pattern=r"^[^/#+]+$")
    kind: Kind
    schema_id: str = Field(alias="schema", pattern=r"^[A-Za-z_][\w.]*@\d+$")
    payload: dict[str, JsonValue]
    time: float = Field(default_factory=time.time)
    trace: PolicyTrace | None = None

    def to_json(self) -> bytes:
        """Wire form: compact JSON, field `schema` under its public name."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def is_for(self, agent: str) -> bool:
        """True when `agent` should receive this envelope (addressed or broadcast)."""
        return self.recipient == agent or (self.recipient == BROADCAST and self.sender != agent)
