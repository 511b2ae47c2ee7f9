"""LLM support for agents: model loading and caching, constrained decoding, batched inference."""

from agents.llm.agent import LLMAgent
from agents.llm.engine import (
    EngineStats,
    Generation,
    GenerationRequest,
    InferenceEngine,
    get_engine,
)
from agents.llm.loading import ModelNotFound, load_model
from agents.llm.options import LLMAgentOptions
from agents.llm.policy import Score, TokenScores, score_actions, score_messages

__all__ = [
    "EngineStats",
    "Generation",
    "GenerationRequest",
    "InferenceEngine",
    "LLMAgent",
    "LLMAgentOptions",
    "ModelNotFound",
    "Score",
    "TokenScores",
    "get_engine",
    "load_model",
    "score_actions",
    "score_messages",
]
