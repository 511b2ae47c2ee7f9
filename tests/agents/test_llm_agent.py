"""LLMAgent with a tiny random model: prompts, schema-valid messages, re-asks, exact actions,
LoRA adapter folders."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from pydantic import Field, ValidationError, model_validator
from structlog.testing import capture_logs

from agents.base import Agent, AgentContext, Route
from agents.llm.actions import action_options
from agents.llm.adapters import (
    adapter_scope,
    attach_adapters,
    enable_adapter_grads,
    load_adapters,
    save_adapters,
)
from agents.llm.agent import LLMAgent
from agents.llm.engine import Generation, GenerationRequest, InferenceEngine, get_engine
from agents.llm.loading import load_model
from agents.llm.options import LLMAgentOptions
from agents.llm.policy import score_actions
from agents.model import ModelConfig
from agents.plugins import build_agent
from protocols import Message, MessageSpec, Observation, SchemaRegistry, seal

ACTIONS = ["cooperate", "defect", "wait", "leave"]
MASKED = Observation(text="Round 3 of 10.", action_names=ACTIONS,
                     action_mask=[True, False, True, False])


class Pair(Message):
    """Two digits; the validator (high = low + 9) is beyond what a JSON Schema says."""

    low: int = Field(ge=0, le=9)
    high: int = Field(ge=0, le=9)

    @model_validator(mode="after")
    def _spread(self) -> Pair:
        if self.high - self.low != 9:
            raise ValueError("high must be exactly low + 9")
        return self


PLAN = MessageSpec.model_validate({"fields": {
    "intent": {"type": "enum", "values": ["cooperate", "defect"]},
    "confidence": {"type": "int", "ge": 0, "le": 10},
    "note": {"type": "str", "min_length": 1, "max_length": 8},
    "steps": {"type": "list", "items": {"type": "enum", "values": ["a", "b"]},
              "min_items": 1, "max_items": 2},
    "target": {"type": "object", "fields": {
        "who": {"type": "enum", "values": ["bob", "carol"]},
        "rank": {"type": "int", "ge": 1, "le": 3},
    }},
}})


def registry() -> SchemaRegistry:
    reg = SchemaRegistry.from_specs({"Plan": PLAN})
    reg.register("Pair@1", Pair)
    return reg


@pytest.fixture(scope="module")
def model_config(tiny_model_dir: Path) -> ModelConfig:
    return ModelConfig(name=str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def engine(model_config: ModelConfig) -> InferenceEngine:
    return InferenceEngine(*load_model(model_config))


def make_agent(engine: Any, routes: list[Route] | None = None, **options: Any) -> LLMAgent:
    context = AgentContext(name="alice", routes=routes or [], registry=registry(),
                           options=options, seed=3)
    return LLMAgent(replace(context, engine=engine))


class SpyEngine:
    """Passes calls to a real engine and keeps the generation requests."""

    def __init__(self, inner: InferenceEngine) -> None:
        self.inner, self.model, self.tokenizer = inner, inner.model, inner.tokenizer
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        return await self.inner.generate(request)

    async def score_options(self, prompt_ids: list[int], options: list[list[int]],
                            adapter: str | None = None) -> list[float]:
        return await self.inner.score_options(prompt_ids, options, adapter)


def test_options_are_strict() -> None:
    with pytest.raises(ValidationError):
        LLMAgentOptions.model_validate({"temprature": 0.5})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        LLMAgentOptions.model_validate({"turn_template": "{observation} {reward}"})
    with pytest.raises(ValidationError):
        LLMAgentOptions.model_validate({"epsilon": 1.5})
    assert LLMAgentOptions().reask_limit == 2


def test_ucb_option_forms() -> None:
    assert LLMAgentOptions().ucb_c is None
    assert LLMAgentOptions(ucb=True).ucb_c == pytest.approx(math.sqrt(2))
    assert LLMAgentOptions.model_validate({"ucb": 0.5}).ucb_c == 0.5
    assert LLMAgentOptions.model_validate({"ucb": 2}).ucb_c == 2.0
    with pytest.raises(ValidationError):
        LLMAgentOptions.model_validate({"ucb": -1.0})


async def test_built_from_context_uses_the_process_engine(model_config: ModelConfig) -> None:
    context = AgentContext(name="alice", routes=[], registry=registry(), model=model_config,
                           options={"epsilon": 0.1})
    agent = build_agent("llm", context)
    assert isinstance(agent, LLMAgent) and isinstance(agent, Agent)
    choice = await agent.act(MASKED, [])
    assert choice.action in MASKED.legal_actions
    assert agent.engine is get_engine(model_config)


async def test_prompt_renders_inbox_and_legal_actions(engine: InferenceEngine) -> None:
    spy = SpyEngine(engine)
    agent = make_agent(spy, epsilon=1.0)
    said = seal(Pair(low=0, high=9), run="r", episode=0, step=3, sender="bob",
                recipient="alice", schema_id="Pair@1")
    choice = await agent.act(MASKED, [said])
    assert choice.trace is not None
    text = engine.tokenizer.decode(choice.trace.prompt_ids)
    assert isinstance(text, str)
    assert text.startswith("<|im_start|>system\nYou are alice")
    assert 'From bob: {"low": 0, "high": 9}' in text
    assert "Round 3 of 10." in text
    assert "one of: cooperate, wait" in text and "defect" not in text
    assert text.endswith("<|im_start|>assistant\n")


async def test_speak_writes_valid_nested_messages(engine: InferenceEngine) -> None:
    routes = [Route("bob", "Plan@1"), Route("all", "Plan@1")]
    agent = make_agent(engine, routes, max_message_tokens=96)
    with capture_logs() as logs:
        said = await agent.speak(MASKED, [])
    assert [u.recipient for u in said] == ["bob", "all"]
    reg = registry()
    for utterance in said:
        reg.validate("Plan@1", utterance.message.model_dump(mode="json"))  # raises if invalid
        trace = utterance.trace
        assert trace is not None and trace.constraint is not None
        assert json.loads(trace.constraint) == reg.json_schema("Plan@1")
        assert len(trace.token_ids) == len(trace.logprobs) > 0
        assert all(lp <= 0 for lp in trace.logprobs)
    stats = agent.model_usage.model_dump()
    assert stats["calls"] == 2 and stats["valid"] == 2 and stats["rejected"] == 0
    assert stats["tokens_out"] == sum(len(u.trace.token_ids) for u in said if u.trace)
    calls = [e for e in logs if e["event"] == "llm_call"]
    assert len(calls) == 2 and all(e["agent"] == "alice" and e["valid"] for e in calls)
    assert {"tokens_in", "tokens_out", "latency_ms"} <= set(calls[0])


async def test_invalid_messages_are_reasked_then_rejected(engine: InferenceEngine) -> None:
    spy = SpyEngine(engine)
    agent = make_agent(spy, [Route("bob", "Pair@1")], reask_limit=2, max_message_tokens=24)
    with capture_logs() as logs:
        said = await agent.speak(MASKED, [])
    assert said == []
    assert agent.model_usage.model_dump() == {
        "calls": 3, "tokens_in": sum(len(r.prompt_ids) for r in spy.requests),
        "tokens_out": agent.model_usage.tokens_out, "valid": 0, "reasked": 2, "rejected": 1,
    }
    assert len(spy.requests) == 3
    reask = engine.tokenizer.decode(spy.requests[1].prompt_ids)
    assert "not valid: message: high must be exactly low + 9" in reask
    assert reask.count("<|im_start|>assistant") == 2  # the failed answer is shown back
    assert [e["valid"] for e in logs if e["event"] == "llm_call"] == [False] * 3
    assert any(e["event"] == "llm_message_rejected" for e in logs)


async def test_act_picks_only_legal_actions(engine: InferenceEngine) -> None:
    agent = make_agent(engine, epsilon=1.0)
    picks = set()
    for _ in range(16):
        choice = await agent.act(MASKED, [])
        assert choice.trace is not None and choice.trace.legal == [0, 2]
        assert choice.trace.logprobs == [pytest.approx(math.log(0.5))]  # epsilon=1: uniform
        picks.add(choice.action)
    assert picks == {0, 2}


async def test_act_is_reproducible_with_the_seed(engine: InferenceEngine) -> None:
    runs = []
    for _ in range(2):
        agent = make_agent(engine, epsilon=0.5)
        runs.append([(await agent.act(MASKED, [])).action for _ in range(6)])
    assert runs[0] == runs[1]


async def test_single_legal_action_needs_no_model_call(engine: InferenceEngine) -> None:
    agent = make_agent(engine)
    only = Observation(text="x", action_names=ACTIONS, action_mask=[False, False, False, True])
    choice = await agent.act(only, [])
    assert choice.action == 3 and choice.trace is not None and choice.trace.logprobs == [0.0]
    assert agent.model_usage.calls == 0


async def test_ucb_tries_each_action_then_exploits(engine: InferenceEngine) -> None:
    agent = make_agent(engine, ucb=0.0)
    first = await agent.act(MASKED, [])
    agent.observe_reward(1.0)
    second = await agent.act(MASKED, [])
    agent.observe_reward(0.0)
    assert {first.action, second.action} == {0, 2}
    for _ in range(3):
        choice = await agent.act(MASKED, [])
        agent.observe_reward(1.0 if choice.action == first.action else 0.0)
        assert choice.action == first.action
        assert choice.trace is not None and choice.trace.logprobs == [0.0]  # deterministic


def perturbed(model: torch.nn.Module, names: list[str], seed: int = 0) -> PeftModel:
    """Attach LoRA adapters and give them non-zero weights, so that they matter."""
    peft_model = attach_adapters(model, names, rank=4, alpha=8, target_modules=["q_proj", "v_proj"])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return peft_model


def lora_state(model: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()
            if "lora_" in k and f".{adapter}." in k}


async def test_recorded_action_logprob_equals_recomputed(model_config: ModelConfig) -> None:
    model, tokenizer = load_model(model_config)
    peft_model = perturbed(model, ["alice", "bob"])
    engine = InferenceEngine(peft_model, tokenizer)
    agent = make_agent(engine, epsilon=0.2, action_temperature=20.0, adapter="alice")
    observation = Observation(text="Go.", action_names=ACTIONS)
    for _ in range(3):
        choice = await agent.act(observation, [])
        trace = choice.trace
        assert trace is not None and trace.legal is not None and trace.adapter == "alice"
        options = action_options(tokenizer, ACTIONS, trace.legal)
        assert trace.token_ids == options[trace.legal.index(choice.action)]
        assert trace.options == options
        with adapter_scope(peft_model, trace.adapter):
            [(recomputed, _)] = score_actions(peft_model,
                                              [(trace, trace.legal.index(choice.action))])
        assert float(recomputed.detach()) == pytest.approx(trace.logprobs[0], abs=1e-5)
        assert trace.logprobs[0] < -1e-3  # not a degenerate distribution
    lora = {k: p for k, p in peft_model.named_parameters() if "lora_" in k}
    grads = dict(zip(lora, torch.autograd.grad(recomputed, list(lora.values()),
                                               allow_unused=True), strict=True))
    assert any(g is not None and g.abs().sum() > 0 for k, g in grads.items() if ".alice." in k)
    assert all(g is None for k, g in grads.items() if ".bob." in k)
    await engine.aclose()


def test_adapters_save_load_round_trip(model_config: ModelConfig, tmp_path: Path) -> None:
    trained = perturbed(load_model(model_config)[0], ["alice", "bob"])
    assert save_adapters(trained, tmp_path) == ["alice", "bob"]
    assert (tmp_path / "alice" / "adapter_config.json").is_file()
    loaded = load_adapters(load_model(model_config)[0], tmp_path)
    assert sorted(loaded.peft_config) == ["alice", "bob"]
    for adapter in ["alice", "bob"]:
        before, after = lora_state(trained, adapter), lora_state(loaded, adapter)
        assert before.keys() == after.keys() and before
        assert all(torch.equal(before[k], after[k]) for k in before)
    ids = torch.tensor([[1, 520, 9531, 198]])
    with torch.no_grad(), adapter_scope(trained, "bob"), adapter_scope(loaded, "bob"):
        assert torch.allclose(trained(ids).logits, loaded(ids).logits)


def test_enable_adapter_grads_after_set_adapter(model_config: ModelConfig) -> None:
    peft_model = perturbed(load_model(model_config)[0], ["alice", "bob"])
    peft_model.set_adapter("alice")  # peft freezes bob here
    bob = [p for k, p in peft_model.named_parameters() if "lora_" in k and ".bob." in k]
    assert not any(p.requires_grad for p in bob)
    enable_adapter_grads(peft_model, ["alice", "bob"])
    assert all(p.requires_grad for p in bob)


def test_adapter_scope_keeps_requires_grad(model_config: ModelConfig) -> None:
    peft_model = perturbed(load_model(model_config)[0], ["alice", "bob"])
    flags = {k: p.requires_grad for k, p in peft_model.named_parameters()}
    for adapter in ["bob", None, "alice"]:
        with adapter_scope(peft_model, adapter):
            assert {k: p.requires_grad for k, p in peft_model.named_parameters()} == flags
        assert {k: p.requires_grad for k, p in peft_model.named_parameters()} == flags
    assert peft_model.active_adapter == "alice"


async def test_agent_loads_its_adapters_folder(model_config: ModelConfig, tmp_path: Path) -> None:
    save_adapters(perturbed(load_model(model_config)[0], ["alice"]), tmp_path)
    engine = InferenceEngine(*load_model(model_config))
    context = AgentContext(name="alice", routes=[], registry=registry(), seed=0,
                           options={"adapter": "alice"}, adapters_dir=str(tmp_path))
    agents = [LLMAgent(replace(context, engine=engine)), LLMAgent(replace(context, engine=engine))]
    choices = [await agent.act(MASKED, []) for agent in agents]
    assert isinstance(engine.model, PeftModel) and list(engine.model.peft_config) == ["alice"]
    assert all(c.trace is not None and c.trace.adapter == "alice" for c in choices)
    missing = LLMAgent(AgentContext(name="carol", routes=[], registry=registry(),
                                    options={"adapter": "carol"}, adapters_dir=str(tmp_path),
                                    engine=engine))
    with pytest.raises(ValueError, match="adapter 'carol' is not loaded"):
        await missing.act(MASKED, [])
    await engine.aclose()


def test_top_layers_puts_adapters_in_the_last_layers_only(model_config: ModelConfig) -> None:
    model = load_model(model_config)[0]
    layers = model.config.num_hidden_layers
    with pytest.raises(ValueError, match="top_layers"):
        attach_adapters(load_model(model_config)[0], ["a"], top_layers=layers + 1)
    peft_model = attach_adapters(model, ["a"], rank=2, top_layers=1)
    lora = [name for name, _ in peft_model.named_parameters() if "lora_" in name]
    assert lora and all(f"layers.{layers - 1}." in name for name in lora)
