"""Agents: the Agent protocol, built-in agents, plug-ins, and LLM support (agents.llm)."""

from agents.base import (
    Agent,
    AgentContext,
    Choice,
    ModelUsage,
    RewardObserver,
    Route,
    UsesModel,
    Utterance,
)
from agents.model import ModelConfig
from agents.plugins import AgentLoadError, agent_class, build_agent

__all__ = [
    "Agent",
    "AgentContext",
    "AgentLoadError",
    "Choice",
    "ModelConfig",
    "ModelUsage",
    "RewardObserver",
    "Route",
    "UsesModel",
    "Utterance",
    "agent_class",
    "build_agent",
]
