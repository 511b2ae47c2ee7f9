"""LLMAgent: a language model that writes schema-valid messages and picks legal actions.

Messages are decoded under the JSON Schema of their route, then parsed and
validated with pydantic (validators included); an invalid message is re-asked
with the error fed back, a bounded number of times, then dropped and counted.
Actions are sampled from an exact distribution over the legal set (see
`agents.llm.actions`), and every model output carries a `PolicyTrace` with the
log-probs of the distribution it was actually drawn from.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence

import structlog
import torch
from peft import PeftModel
from pydantic import BaseModel, ValidationError

from agents.base import AgentContext, Choice, ModelUsage, Route, Utterance
from agents.llm import prompts
from agents.llm.actions import action_distribution, action_options, per_token
from agents.llm.adapters import adapter_folders, ensure_adapters
from agents.llm.compute import to_torch_thread
from agents.llm.engine import Generation, GenerationRequest, InferenceEngine, get_engine
from agents.llm.exploration import UCBStats, mix_uniform, one_hot, sample_index
from agents.llm.options import LLMAgentOptions
from protocols import Envelope, Observation, PolicyTrace, describe

log = structlog.get_logger()


class LLMAgent:
    """An agent whose messages and actions come from a (LoRA-adapted) language model."""

    def __init__(self, context: AgentContext) -> None:
        """Build from the runtime's context: its engine, else the process-wide one of its model."""
        self.name = context.name
        self.options = LLMAgentOptions.model_validate(dict(context.options))
        self.model_usage = ModelUsage()
        self._context = context
        self._engine = context.engine
        self._engine_checked = False
        self._rng = random.Random(context.seed)
        self._ucb = UCBStats()
        self._last_action: int | None = None
        self._system = self.options.system_prompt.format_map({"agent": self.name})
        self.adapter = self.options.adapter or _default_adapter(self.name, context.adapters_dir)

    @property
    def engine(self) -> InferenceEngine:
        """The inference engine, its adapters loaded and this agent's adapter checked."""
        if self._engine is None:
            self._engine = get_engine(self._context.model)
        if not self._engine_checked:
            if self._context.adapters_dir is not None:
                ensure_adapters(self._engine, self._context.adapters_dir)
            self._check_adapter(self._engine)
            self._engine_checked = True
        return self._engine

    async def ready_engine(self) -> InferenceEngine:
        """`engine`, its first load (the model, the adapters) run off the event loop, so
        other agents and the runner go on meanwhile. It runs on the torch thread: agents
        loading at once (one per slot) then take turns, and none changes the model while
        the engine runs a batch on it."""
        if self._engine is None or not self._engine_checked:
            return await to_torch_thread(lambda: self.engine)
        return self._engine

    def _check_adapter(self, engine: InferenceEngine) -> None:
        adapter = self.adapter
        if adapter is None:
            return
        model = engine.model
        if not isinstance(model, PeftModel) or adapter not in model.peft_config:
            have = sorted(model.peft_config) if isinstance(model, PeftModel) else []
            raise ValueError(
                f"agent {self.name}: adapter {adapter!r} is not loaded (have {have}); "
                "give an adapters folder that holds it"
            )

    def observe_reward(self, reward: float) -> None:
        """Credit the last action with `reward` (UCB statistics)."""
        if self._last_action is not None:
            self._ucb.update(self._last_action, reward)
            self._last_action = None

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]) -> list[Utterance]:
        """One schema-valid message per route, or none for a route that failed validation."""
        if not self._context.routes:
            return []
        engine = await self.ready_engine()
        turn = self._turn(observation, inbox)
        # Seeds are drawn before the concurrent writes so the outcome does not
        # depend on how the engine interleaves them.
        seeds = [self._rng.getrandbits(31) for _ in self._context.routes]
        written = await asyncio.gather(
            *(self._write(engine, route, turn, seed)
              for route, seed in zip(self._context.routes, seeds, strict=True))
        )
        return [utterance for utterance in written if utterance is not None]

    def _turn(self, observation: Observation, inbox: Sequence[Envelope]) -> str:
        return prompts.render_turn(
            self.options.turn_template, agent=self.name, observation=observation, inbox=inbox
        )

    async def _write(
        self, engine: InferenceEngine, route: Route, turn: str, seed: int
    ) -> Utterance | None:
        """Write one message for `route`, re-asking on invalid output."""
        schema = self._context.registry.json_schema(route.schema_id)
        constraint = json.dumps(schema)
        instruction = prompts.render_message_instruction(
            self.options.message_template, agent=self.name, recipient=route.recipient,
            schema_id=route.schema_id, schema=schema,
        )
        messages = prompts.conversation(self._system, f"{turn}\n\n{instruction}")
        for attempt in range(self.options.reask_limit + 1):
            prompt_ids = prompts.chat_prompt_ids(engine.tokenizer, messages)
            start = time.perf_counter()
            request = self._request(prompt_ids, constraint, seed + attempt)
            generation = await engine.generate(request)
            message, error = self._parse(route.schema_id, generation)
            self._record_call("speak", len(prompt_ids), len(generation.token_ids), start,
                              error is None)
            if message is not None:
                self.model_usage.valid += 1
                trace = PolicyTrace(
                    prompt_ids=prompt_ids, token_ids=generation.token_ids,
                    logprobs=generation.logprobs, constraint=constraint,
                    temperature=self.options.temperature, top_p=self.options.top_p,
                    adapter=self.adapter,
                )
                return Utterance(route.recipient, route.schema_id, message, trace)
            if attempt < self.options.reask_limit:
                self.model_usage.reasked += 1
                messages = [
                    *messages,
                    {"role": "assistant", "content": generation.text},
                    {"role": "user", "content": prompts.REASK_TEMPLATE.format(error=error)},
                ]
        self.model_usage.rejected += 1
        log.warning("llm_message_rejected", agent=self.name, recipient=route.recipient,
                    schema=route.schema_id, error=error)
        return None

    def _request(self, prompt_ids: list[int], constraint: str, seed: int) -> GenerationRequest:
        return GenerationRequest(
            prompt_ids=prompt_ids, max_new_tokens=self.options.max_message_tokens,
            temperature=self.options.temperature, top_p=self.options.top_p,
            json_schema=constraint, adapter=self.adapter, seed=seed % 2**31,
        )

    def _parse(
        self, schema_id: str, generation: Generation
    ) -> tuple[BaseModel | None, str | None]:
        """The typed message if the text is a valid one, else the error to feed back."""
        if not generation.finished:
            return None, (f"the JSON was cut off after {len(generation.token_ids)} tokens; "
                          "write a shorter message")
        try:
            parsed = json.loads(generation.text)
        except json.JSONDecodeError as error:
            return None, f"not valid JSON ({error.msg} at position {error.pos})"
        if not isinstance(parsed, dict):
            return None, "the message must be a JSON object"
        try:
            return self._context.registry.validate(schema_id, parsed), None
        except ValidationError as error:
            return None, describe(error, root="message", limit=3)

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        """Sample a legal action from the exact (tempered, epsilon-mixed or UCB) distribution."""
        legal = observation.legal_actions
        if not legal:
            raise ValueError(f"agent {self.name}: no legal action to choose from")
        engine = await self.ready_engine()
        prompt_ids, options = self._action_prompt(observation, inbox)
        probs = await self._action_probs(engine, prompt_ids, options, legal)
        index = sample_index(probs, self._rng)
        self._last_action = legal[index]
        trace = PolicyTrace(
            prompt_ids=prompt_ids, token_ids=options[index],
            logprobs=[float(torch.log(probs[index]))], legal=legal, options=options,
            temperature=self.options.action_temperature, epsilon=self.options.epsilon,
            policy="sample" if self.options.ucb_c is None else "ucb", adapter=self.adapter,
        )
        return Choice(legal[index], trace)

    async def action_distribution(self, observation: Observation,
                                  inbox: Sequence[Envelope]) -> list[float]:
        """The probability `act` would give each legal action, in legal order; no draw."""
        engine = await self.ready_engine()
        prompt_ids, options = self._action_prompt(observation, inbox)
        probs = await self._action_probs(engine, prompt_ids, options, observation.legal_actions)
        return [float(p) for p in probs]

    def _action_prompt(self, observation: Observation, inbox: Sequence[Envelope]
                       ) -> tuple[list[int], list[list[int]]]:
        """The action prompt's token ids and each legal option's token ids."""
        tokenizer = self.engine.tokenizer
        instruction = prompts.render_action_instruction(
            self.options.action_template, agent=self.name, observation=observation
        )
        messages = prompts.conversation(
            self._system, f"{self._turn(observation, inbox)}\n\n{instruction}"
        )
        return (prompts.chat_prompt_ids(tokenizer, messages),
                action_options(tokenizer, observation.action_names, observation.legal_actions))

    async def _action_probs(
        self, engine: InferenceEngine, prompt_ids: list[int], options: list[list[int]],
        legal: list[int],
    ) -> torch.Tensor:
        """The distribution the action is sampled from, over positions in `legal`."""
        if len(legal) == 1:
            return one_hot(0, 1)  # nothing to choose: no model call, log-prob 0
        start = time.perf_counter()
        totals = await engine.score_options(prompt_ids, options, adapter=self.adapter)
        scores = per_token(totals, options)
        self._record_call("act", len(prompt_ids) + sum(map(len, options)), 0, start, True)
        c = self.options.ucb_c
        if c is None:
            return action_distribution(scores, self.options.action_temperature,
                                       self.options.epsilon)
        # UCB: all mass on the argmax of the UCB score (ties to the model's
        # preference), then the epsilon mixture; deterministic when epsilon = 0.
        best = self._ucb.choose(legal, c, tie_break=scores.tolist())
        return mix_uniform(one_hot(best, len(legal)), self.options.epsilon)

    def _record_call(
        self, phase: str, tokens_in: int, tokens_out: int, start: float, valid: bool
    ) -> None:
        self.model_usage.calls += 1
        self.model_usage.tokens_in += tokens_in
        self.model_usage.tokens_out += tokens_out
        latency_ms = round((time.perf_counter() - start) * 1000.0, 1)
        log.debug("llm_call", agent=self.name, phase=phase, tokens_in=tokens_in,
                  tokens_out=tokens_out, latency_ms=latency_ms, valid=valid)


def _default_adapter(agent: str, adapters_dir: str | None) -> str | None:
    """With trained adapters and no `adapter` option: the agent's own, else a shared one.

    `parley train` saves one adapter per agent, named after it, or one named `shared`.
    """
    if adapters_dir is None:
        return None
    saved = adapter_folders(adapters_dir)
    for name in (agent, "shared"):
        if name in saved:
            return name
    raise ValueError(f"agent {agent}: {adapters_dir} holds no adapter named {agent!r} or "
                     f"'shared' (it has {sorted(saved)}); set the agent's `adapter` option")
