"""Finding agent classes: built-in names, the `parley.agents` entry points, module:Class."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from agents.base import Agent, AgentContext
from protocols import ImportPathError, UnknownSchema, describe, import_object

ENTRY_POINT_GROUP = "parley.agents"
BUILTIN = {
    "scripted": "agents.scripted:ScriptedAgent",
    "random": "agents.scripted:RandomAgent",
    "strategy": "agents.strategies:StrategyAgent",
    "codebook": "agents.scripted:CodeBookAgent",
    "llm": "agents.llm.agent:LLMAgent",
}


class AgentLoadError(ValueError):
    """An agent type that cannot be found or built."""


def _import(path: str) -> Any:
    try:
        return import_object(path)
    except ImportPathError as error:
        raise AgentLoadError(f"agent type: {error}") from None


def agent_class(type_name: str) -> Any:
    """The class a scenario's `type:` names."""
    if type_name in BUILTIN:
        return _import(BUILTIN[type_name])
    if ":" in type_name:
        return _import(type_name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == type_name:
            return ep.load()
    known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise AgentLoadError(
        f"unknown agent type {type_name!r}: use one of {', '.join(known)}, or module:Class"
    )


def build_agent(type_name: str, context: AgentContext) -> Agent:
    """Build an agent and check it speaks the Agent protocol."""
    cls = agent_class(type_name)
    try:
        agent = cls(context)
    except ValidationError as error:
        raise AgentLoadError(f"agent {context.name!r} ({type_name}) options: "
                             f"{describe(error, root='options', limit=2)}") from None
    except UnknownSchema as error:
        raise AgentLoadError(f"agent {context.name!r} ({type_name}): unknown message "
                             f"{error}") from None
    if not isinstance(agent, Agent):
        raise AgentLoadError(f"{type_name} does not implement speak() and act()")
    return agent
