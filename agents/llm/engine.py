"""The batched InferenceEngine: one model per process, shared by every LLM agent.

Agents await `generate` and `score_options` concurrently; a background task
gathers what is pending for a short window (or until `max_batch`) and runs it
as one batch in a worker thread, so the event loop (and the bus) stay live.
Generation uses left padding and incremental decoding with a KV cache; rows
that finish leave the batch (no more compute), and every caller resumes when
its batch ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope
from agents.llm.compute import to_torch_thread
from agents.llm.decoding import GenerationRow, decode_rows, score_rows
from agents.llm.grammar import SchemaGrammar, schema_grammar
from agents.llm.jobs import Generation, GenerationRequest, Job, ScoreRequest, Work, tokens_in
from agents.llm.loading import load_model
from agents.llm.sampling import logits_width, stop_token_ids
from agents.model import ModelConfig

__all__ = [
    "EngineStats",
    "Generation",
    "GenerationRequest",
    "InferenceEngine",
    "get_engine",
]

log = structlog.get_logger()


@dataclass
class EngineStats:
    """Running counters of an engine."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    batches: int = 0


class InferenceEngine:
    """Batches the model calls of many concurrent agents.

    Args:
        model: a causal LM, or a peft `PeftModel` holding named adapters.
        tokenizer: its tokenizer (pad token set).
        max_batch: most requests in one batch.
        batch_window_s: how long the first pending request waits for company.
        seed: seed for requests that bring none.
        ignore_eos: for benchmarks: unconstrained requests run to `max_new_tokens`.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch: int = 32,
        batch_window_s: float = 0.005,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.stats = EngineStats()
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.ignore_eos = ignore_eos
        self.vocab_size = logits_width(model)
        self._rng = random.Random(seed)
        self._pending: list[Job] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._model_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.model.parameters()).device

    async def generate(self, request: GenerationRequest) -> Generation:
        """Sample one completion, batched with whatever else is pending."""
        if not request.prompt_ids or request.max_new_tokens < 1:
            raise ValueError("generate needs a non-empty prompt and max_new_tokens >= 1")
        self._check_ids(request.prompt_ids)
        if request.json_schema is not None:
            # Compile here (once per schema, ~1 ms) so that a bad schema fails its
            # own caller, not the batch it would have joined.
            self._grammar().compiled(request.json_schema)
        result: Generation = await self._submit(request)
        return result

    async def score_options(
        self, prompt_ids: list[int], options: list[list[int]], adapter: str | None = None
    ) -> list[float]:
        """Total log-likelihood of each option's tokens as the continuation of the prompt.

        The prompt runs once; its KV cache is shared by all options (and batched
        with other callers' prompts).
        """
        if not prompt_ids or not options or not all(options):
            raise ValueError("score_options needs a prompt and non-empty options")
        self._check_ids(prompt_ids)
        for option in options:
            self._check_ids(option)
        result: list[float] = await self._submit(ScoreRequest(prompt_ids, options, adapter))
        return result

    async def aclose(self) -> None:
        """Stop the background batching task of the current event loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _submit(self, work: Work) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # A new event loop (each test has its own): start afresh on it.
            self._loop, self._pending, self._wakeup = loop, [], asyncio.Event()
            self._task = loop.create_task(self._schedule(), name="inference_engine")
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Job(work, future, loop))
        self._wakeup.set()
        return future

    async def _schedule(self) -> None:
        """Collect pending jobs into batches and run each in a worker thread."""
        while True:
            await self._wakeup.wait()
            if len(self._pending) < self.max_batch:
                await asyncio.sleep(self.batch_window_s)
            jobs = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            if not self._pending:
                self._wakeup.clear()
            if not jobs:
                continue
            try:
                await to_torch_thread(self._run_batch, jobs)
            except Exception as error:  # keep serving: fail this batch's callers only
                log.exception("engine_batch_crashed", size=len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)

    def _run_batch(self, jobs: list[Job]) -> None:
        """Run one batch, grouped by adapter: one forward per group per step."""
        start = time.perf_counter()
        read = sum(tokens_in(job.work) for job in jobs)
        adapters = dict.fromkeys(job.work.adapter for job in jobs)
        tokens_out = 0
        # Count before any caller resumes, so a caller always sees its own work counted.
        self.stats.calls += len(jobs)
        self.stats.tokens_in += read
        self.stats.batches += 1
        with self._model_lock, torch.inference_mode():
            for adapter in adapters:
                group = [job for job in jobs if job.work.adapter == adapter]
                try:
                    with adapter_scope(self.model, adapter):
                        tokens_out += self._run_group(group)
                except Exception as error:  # every caller of the group gets the failure
                    log.exception("engine_batch_failed", adapter=adapter)
                    for job in group:
                        if job.value is None:
                            job.error = error
        # Callers resume only now that the model's adapter state is restored:
        # they (or a trainer) may use the model as soon as they wake.
        for job in jobs:
            job.deliver()
        log.debug(
            "engine_batch",
            size=len(jobs),
            adapters=len(adapters),
            tokens_in=read,
            tokens_out=tokens_out,
            latency_s=round(time.perf_counter() - start, 4),
        )

    def _run_group(self, jobs: list[Job]) -> int:
        """Score, then generate, the jobs of one adapter; returns tokens generated."""
        scores = [job for job in jobs if isinstance(job.work, ScoreRequest)]
        if scores:
            works = [job.work for job in scores if isinstance(job.work, ScoreRequest)]
            results = score_rows(
                self.model, [(w.prompt_ids, w.options) for w in works], self._pad_id()
            )
            for job, result in zip(scores, results, strict=True):
                job.value = result
        generations = [job for job in jobs if isinstance(job.work, GenerationRequest)]
        if not generations:
            return 0
        rows = [
            GenerationRow(job.work, self._generator(job.work.seed), index, self._stops(job.work))
            for index, job in enumerate(generations)
            if isinstance(job.work, GenerationRequest)
        ]
        grammar = None
        if any(row.request.json_schema is not None for row in rows):
            grammar = self._grammar()

        def finish(row: GenerationRow) -> None:
            text = str(self.tokenizer.decode(row.tokens, skip_special_tokens=True))
            generation = Generation(list(row.tokens), list(row.logprobs), text, row.finished)
            self.stats.tokens_out += len(row.tokens)
            generations[row.index].value = generation

        decode_rows(
            self.model,
            rows,
            pad_id=self._pad_id(),
            grammar=grammar,
            on_done=finish,
        )
        return sum(len(row.tokens) for row in rows)

    def _grammar(self) -> SchemaGrammar:
        return schema_grammar(self.tokenizer, self.vocab_size, self.stop_ids)

    def _check_ids(self, ids: list[int]) -> None:
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")

    def _stops(self, request: GenerationRequest) -> tuple[int, ...]:
        # A schema's grammar needs its stop token to terminate, benchmark or not.
        if self.ignore_eos and request.json_schema is None:
            return ()
        return tuple(self.stop_ids)

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else self._rng.getrandbits(63))
        return generator

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else self.stop_ids[0]


T = TypeVar("T")
_ENGINES: dict[ModelConfig, InferenceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(config: ModelConfig) -> InferenceEngine:
    """The process-wide engine of `config`'s model, loading the model on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(config)
        if engine is None:
            model, tokenizer = load_model(config)
            engine = InferenceEngine(model, tokenizer)
            _ENGINES[config] = engine
        return engine


def run_on(engine: InferenceEngine, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` in a fresh event loop, then close the engine's batcher (it lives there)."""

    async def run() -> T:
        try:
            return await work
        finally:
            await engine.aclose()

    return asyncio.run(run())
