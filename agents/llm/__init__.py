"""LLM support for agents: model loading and caching, constrained decoding, batched inference."""

from agents.llm.agent import LLMAgent, LLMAgentOptions
from agents.llm.engine import (
    EngineStats,
    Generation,
    GenerationRequest,
    InferenceEngine,
    get_engine,
)
from agents.llm.loading import ModelNotFound, load_model
from agents.llm.sampling import sequence_logprobs

__all__ = [
    "EngineStats",
    "Generation",
    "GenerationRequest",
    "InferenceEngine",
    "LLMAgent",
    "LLMAgentOptions",
    "ModelNotFound",
    "get_engine",
    "load_model",
    "sequence_logprobs",
]
