"""The Envelope: everything that happens in a run is one of these on a bus."""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocols.errors import describe
from protocols.messages import BuiltinMessage, Kind
from protocols.registry import BUILTIN_REGISTRY, SchemaRegistry, UnknownSchema

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
    options: list[list[int]] | None = Field(
        default=None, description="For actions: token ids of each legal option, in legal order."
    )
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

    `schema_id` names the payload's model as `Name@version`, and `payload` is an
    instance of that model, validated once: where the message was built, or where
    the envelope was read (`protocols.decode` passes the run's registry as the
    validation context; without one, only built-in schemas can be read from JSON).
    `recipient` is an agent id, `runner`, or `all`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # Receivers de-duplicate by (sender, id) and remember ids for a while: bounded,
    # so that one sender cannot fill their memory with a few huge ids.
    id: str = Field(default_factory=_new_id, min_length=1, max_length=64)
    run: str
    episode: int = Field(ge=0)
    step: int = Field(ge=0)
    sender: str = Field(min_length=1, pattern=r"^[^/#+]+$")
    recipient: str = Field(min_length=1, pattern=r"^[^/#+]+$")
    kind: Kind
    schema_id: str = Field(alias="schema", pattern=r"^[A-Za-z_][\w.]*@\d+$")
    payload: SerializeAsAny[BaseModel]
    time: float = Field(default_factory=time.time)
    trace: PolicyTrace | None = None

    @field_validator("payload", mode="before")
    @classmethod
    def _typed_payload(cls, value: object, info: ValidationInfo) -> BaseModel:
        """The payload as its schema's model: kept if it is one, else validated into one."""
        schema_id = info.data.get("schema_id")
        if schema_id is None:
            raise ValueError("no valid schema to read the payload with")
        context = info.context if isinstance(info.context, dict) else {}
        registry: SchemaRegistry | None = context.get("registry")
        if registry is None and isinstance(value, BaseModel):
            return value  # built in-process from a typed message; the bus checks its model
        try:
            model = (registry or BUILTIN_REGISTRY)[schema_id]
        except UnknownSchema:
            raise ValueError(f"unknown schema {schema_id!r}") from None
        if isinstance(value, model):
            return value
        if isinstance(value, BaseModel):
            raise ValueError(f"a {type(value).__name__} is not a {schema_id}")
        try:
            return model.model_validate(value)
        except ValidationError as error:
            raise ValueError(f"{schema_id}: {describe(error, root='payload')}") from None

    @model_validator(mode="after")
    def _kind_fits_payload(self) -> Envelope:
        """A built-in payload carries its own kind; every other message travels as `say`.

        A reader that trusted `kind` would otherwise take a Control for an action, or
        an Action for something an agent said.
        """
        payload = self.payload
        expected = payload.kind if isinstance(payload, BuiltinMessage) else "say"
        if self.kind != expected:
            raise ValueError(f"kind {self.kind!r} does not fit a {self.schema_id} payload "
                             f"(its kind is {expected!r})")
        return self

    def payload_json(self, *, sort_keys: bool = False) -> str:
        """The payload as one line of JSON, as models and people read it (not the wire form)."""
        return json.dumps(self.payload.model_dump(mode="json"), ensure_ascii=False,
                          sort_keys=sort_keys)

    def to_json(self) -> bytes:
        """Wire form: compact JSON, field `schema` under its public name.

        Only an absent trace is left out: a payload's None values are data (a
        required nullable field must survive the trip).
        """
        exclude = {"trace"} if self.trace is None else None
        return self.model_dump_json(by_alias=True, exclude=exclude).encode()

    def is_for(self, agent: str) -> bool:
        """True when `agent` should receive this envelope (addressed or broadcast)."""
        return self.recipient == agent or (self.recipient == BROADCAST and self.sender != agent)
