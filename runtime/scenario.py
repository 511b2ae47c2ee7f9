"""Scenario: one YAML file, loaded into typed models. Unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from agents.base import Route
from agents.model import ModelConfig
from protocols import BROADCAST, RUNNER, MessageSpec, SchemaRegistry
from protocols.messages import BUILTIN_MESSAGES
from runtime.scenario_yaml import Source, dotted, load_yaml_model

_BUILTIN_NAMES = {schema_id.partition("@")[0] for schema_id in BUILTIN_MESSAGES}


def _agent_name(name: str) -> str:
    """An agent id must be usable as an envelope's sender and an MQTT topic level."""
    if not re.fullmatch(r"[^/#+\x00]+", name):
        raise ValueError(f"agent name {name!r} must be non-empty, without / # + or NUL")
    if name in (RUNNER, BROADCAST):
        raise ValueError(f"agent name {name!r} is reserved")
    return name


def _message_name(name: str) -> str:
    """A message name becomes the schema id `Name@version` of every envelope it travels in."""
    if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        raise ValueError(f"message name {name!r} must start with a letter or _ and hold "
                         "only letters, digits, _ and .")
    if name in _BUILTIN_NAMES:
        raise ValueError(f"message name {name!r} is a built-in message")
    return name


AgentName = Annotated[str, AfterValidator(_agent_name)]
MessageName = Annotated[str, AfterValidator(_message_name)]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EnvSpec(Strict):
    """The environment: a built-in text game or any PettingZoo environment."""

    game: str | None = Field(default=None, description="Built-in game: referential, matrix, ...")
    pettingzoo: str | None = Field(
        default=None,
        description="Module of a PettingZoo env, e.g. pettingzoo.classic.rps_v2 or "
        "mpe2.simple_speaker_listener_v4; or module:callable.",
    )
    api: Literal["auto", "parallel", "aec"] = Field(
        default="auto", description="Which PettingZoo API to host; auto prefers parallel_env."
    )
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="Keyword arguments for the env constructor."
    )
    max_steps: int = Field(default=1000, ge=1, description="Truncate episodes after this many.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvSpec:
        if (self.game is None) == (self.pettingzoo is None):
            raise ValueError("give exactly one of 'game' or 'pettingzoo'")
        return self


class AgentSpec(Strict):
    """One agent: its type (built-in name, entry point, or module:Class) and options."""

    type: str = Field(description="scripted, random, llm, an entry point of 'parley.agents', "
                      "or module:Class.")
    options: dict[str, JsonValue] = Field(default_factory=dict, description="Passed to the agent.")
    remote: bool = Field(
        default=False, description="Runs in its own process (`parley agent`); the runner waits."
    )


class RouteSpec(Strict):
    """Who may send which message to whom."""

    sender: str = Field(alias="from", description="The sending agent.")
    recipient: str = Field(alias="to", description="An agent id, or `all`.")
    message: str = Field(description="A message name declared under protocol.messages.")


class ProtocolSpec(Strict):
    """The message protocol: the schemas and the routes they may travel."""

    messages: dict[MessageName, MessageSpec] = Field(
        default_factory=dict, description="Each message by name: its fields (a pydantic "
        "model is built from them) or an imported model.")
    routes: list[RouteSpec] = Field(default_factory=list,
                                    description="Who may send which message to whom.")


class RuntimeSpec(Strict):
    """Timing and fallbacks of a run."""

    action_timeout_s: float = Field(default=30.0, gt=0, description="Wait this long for an action.")
    speak_timeout_s: float = Field(default=30.0, gt=0, description="Wait this long for speaking.")
    remote_timeout_s: float = Field(default=60.0, gt=0, description="Wait for remote agents.")
    default_action: int | None = Field(
        default=None, ge=0, description="Action of a late or crashed agent; None: first legal."
    )
    require_auth: bool = Field(
        default=False, description="Refuse an MQTT broker without a login (`--credentials` "
        "or mqtt://user:pass@...)."
    )


class Scenario(Strict):
    """A whole scenario file."""

    name: str = Field(pattern=r"^[\w.-]+$", description="Also the default run id on the bus.")
    description: str = Field(default="", description="What the scenario is, for people.")
    seed: int = Field(default=0, description="Seeds the envs (episode i: seed + i) and agents.")
    episodes: int = Field(default=1, ge=1, description="Episodes of `parley run`.")
    env: EnvSpec = Field(description="The environment: a built-in game or a PettingZoo env.")
    agents: dict[AgentName, AgentSpec] = Field(description="One entry per agent of the env.")
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec,
                                   description="The messages agents may send, and to whom.")
    model: ModelConfig = Field(default_factory=ModelConfig,
                               description="The language model the `llm` agents share.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec,
                                 description="Timing and fallbacks of a run.")
    adapters: str | None = Field(
        default=None, description="Trained LoRA adapters the LLM agents play unless told "
        "otherwise (`--adapters DIR`, or `--untrained` for the base model): a folder, "
        "relative to this file. `parley train` starts from fresh adapters.")
    training: dict[str, JsonValue] | None = Field(
        default=None,
        description="PPO settings; `parley train` validates them (training.PPOConfig). The "
        "runtime does not read them: dependencies point from training to runtime.",
    )
    _source: Source | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _keep_source(self, info: ValidationInfo) -> Scenario:
        """Keep the file and lines it was loaded from, for errors found after loading."""
        source = info.context.get("source") if isinstance(info.context, dict) else None
        self._source = source if isinstance(source, Source) else None
        return self

    def shipped_adapters(self) -> str | None:
        """`adapters`, resolved against the folder of the scenario file."""
        if self.adapters is None:
            return None
        folder = self._source.path.parent if self._source is not None else Path()
        return str(folder / self.adapters)

    def where(self, *loc: str | int) -> str:
        """`FILE:LINE: field.path` of a field (just the path for a scenario built in code)."""
        return self._source.where(loc) if self._source is not None else dotted(loc)

    @model_validator(mode="after")
    def _routes_known(self) -> Scenario:
        for route in self.protocol.routes:
            if route.sender not in self.agents:
                raise ValueError(f"route from unknown agent {route.sender!r}")
            if route.recipient != BROADCAST and route.recipient not in self.agents:
                raise ValueError(f"route to unknown agent {route.recipient!r}")
            if route.message not in self.protocol.messages:
                raise ValueError(f"route uses undeclared message {route.message!r}")
        return self

    def registry(self) -> SchemaRegistry:
        """The built-in message kinds plus this scenario's messages."""
        return SchemaRegistry.from_specs(self.protocol.messages)

    def routes_of(self, agent: str) -> list[Route]:
        """The messages `agent` may send."""
        specs = self.protocol.messages
        return [
            Route(route.recipient, f"{route.message}@{specs[route.message].version}")
            for route in self.protocol.routes
            if route.sender == agent
        ]

    def allows(self, sender: str, recipient: str, schema_id: str) -> bool:
        """True when the protocol lets `sender` send `schema_id` to `recipient`."""
        return any(
            r.recipient == recipient and r.schema_id == schema_id for r in self.routes_of(sender)
        )


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file; ScenarioError lists every problem with its line."""
    return load_yaml_model(Path(path), Scenario, overrides)
