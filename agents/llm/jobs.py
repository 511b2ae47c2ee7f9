"""What callers ask the inference engine for, and how each answer gets back to them.

These types sit below both the engine (which queues and batches them) and the
decoding loops (which read the requests), so that neither imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to sample.

    Attributes:
        prompt_ids: the prompt's token ids (chat template already applied).
        max_new_tokens: length limit, stop token included.
        temperature: 0 means greedy.
        top_p: nucleus mass; 1 disables top-p.
        json_schema: a JSON Schema string the output must follow (xgrammar).
        adapter: name of a LoRA adapter of the engine's PeftModel; None: base model.
        seed: seed of this request's sampler (random when None).
    """

    prompt_ids: list[int]
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    json_schema: str | None = None
    adapter: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """What the model produced for one request.

    Attributes:
        token_ids: generated tokens, without the prompt. A stop token (EOS) that
            ended the generation IS included, so that stopping is an action with
            its own log-prob; `text` leaves it out.
        logprobs: log-prob of each token under the distribution it was drawn from:
            after the schema mask, temperature and top-p. For temperature 0
            (greedy) they are those of temperature 1.
        text: the decoded tokens, special tokens skipped.
        finished: True when stopped by a stop token or a completed schema, False
            when cut by `max_new_tokens`.
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finished: bool


@dataclass(frozen=True)
class ScoreRequest:
    """Score each option's tokens as the continuation of one prompt, under one adapter."""

    prompt_ids: list[int]
    options: list[list[int]]
    adapter: str | None


Work = GenerationRequest | ScoreRequest


def tokens_in(work: Work) -> int:
    """Tokens the model reads for one request (prompt, plus every option when scoring)."""
    if isinstance(work, GenerationRequest):
        return len(work.prompt_ids)
    return len(work.prompt_ids) + sum(len(option) for option in work.options)


@dataclass
class Job:
    """One pending request and the future its caller awaits (on the caller's loop)."""

    work: Work
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop = field(repr=False)
    value: Any = None
    error: BaseException | None = None

    def deliver(self) -> None:
        """Hand the outcome to the waiting coroutine (called from the worker thread)."""
        value = self.value
        error = self.error
        if value is None and error is None:
            error = RuntimeError("the engine produced no result for this request")

        def settle() -> None:
            if self.future.done():  # the caller was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(settle)
