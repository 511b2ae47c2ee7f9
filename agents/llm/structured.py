"""A model's greedy answer under a JSON schema whose one text field is bounded, so the
grammar always closes the object within the token budget: always a valid answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel

from agents.llm.engine import InferenceEngine
from agents.llm.jobs import GenerationRequest
from agents.llm.prompts import ChatMessage, chat_prompt_ids

M = TypeVar("M", bound=BaseModel)


async def write_valid(engine: InferenceEngine, chat: Sequence[ChatMessage], model: type[M],
                      max_chars: int, adapter: str | None = None) -> M:
    """The model's greedy answer to `chat` as a `model` whose text has <= `max_chars`
    (`adapter`: the LoRA adapter to answer with; None, the base model)."""
    # A character of the string takes at most 6 tokens (a \uXXXX escape, one character a
    # token): the limit plus the JSON around it always fits, so the grammar closes the
    # object before the budget runs out. The budget is a bound; a greedy answer stops early.
    request = GenerationRequest(prompt_ids=chat_prompt_ids(engine.tokenizer, chat),
                                max_new_tokens=6 * max_chars + 32, temperature=0.0,
                                json_schema=json.dumps(model.model_json_schema()), seed=0,
                                adapter=adapter)
    return model.model_validate_json((await engine.generate(request)).text)
