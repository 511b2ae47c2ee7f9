"""Agents: the Agent protocol, built-in agents, plug-ins, and LLM support (agents.llm)."""

from agents.base import Agent, AgentContext, Choice, ModelConfig, Route, Utterance
from agents.plugins import AgentLoadError, agent_class, build_agent

__all__ = [
    "Agent",
    "AgentContext",
    "AgentLoadError",
    "Choice",
    "ModelConfig",
    "Route",
    "Utterance",
    "agent_class",
    "build_agent",
]
