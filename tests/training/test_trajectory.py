"""Trajectories from a hand-made envelope list; decision scores against the rollout's own."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.llm.actions import action_distribution, action_options, per_token
from agents.llm.adapters import attach_adapters
from agents.llm.engine import GenerationRequest, InferenceEngine
from agents.llm.loading import load_model
from agents.model import ModelConfig
from protocols import (
    Action,
    Control,
    Envelope,
    EpisodeEnd,
    Message,
    Observation,
    PolicyTrace,
    Reward,
    seal,
)
from training.config import CriticKind
from training.critic import critic_text, value_row
from training.trajectory import Decision, Trajectories, assemble, score, score_batch

COLOURS = ["red", "blue", "green"]
# Token ids of the colour options (any ids do: assembling reads them off the trace).
OPTIONS = [[100, 2], [200, 201, 2], [300, 2]]
CODE_SCHEMA = json.dumps({"type": "object", "properties": {"code": {"enum": ["zub", "kep"]}},
                          "required": ["code"], "additionalProperties": False})

Tiny = tuple[PreTrainedModel, PreTrainedTokenizerBase]


class Hint(Message):
    """The scenario message of these tests."""

    text: str


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Tiny:
    return load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))


def _env(message: BaseModel, sender: str, recipient: str, episode: int, step: int,
         trace: PolicyTrace | None = None) -> Envelope:
    schema_id = "Hint@1" if isinstance(message, Hint) else None
    return seal(message, run="r", episode=episode, step=step, sender=sender,
                recipient=recipient, schema_id=schema_id, trace=trace)


def _obs(agent: str, episode: int, step: int, text: str) -> Envelope:
    names = ["done"] if agent == "alice" else COLOURS
    return _env(Observation(text=text, action_names=names), "runner", agent, episode, step)


def _act(agent: str, episode: int, step: int, action: int, trace: PolicyTrace) -> Envelope:
    return _env(Action(action=action), agent, "runner", episode, step, trace)


def _reward(agent: str, episode: int, step: int, reward: float) -> Envelope:
    return _env(Reward(reward=reward), "runner", agent, episode, step)


def _end(episode: int, step: int, returns: dict[str, float], success: bool) -> Envelope:
    return _env(EpisodeEnd(returns=returns, steps=step + 1, success=success), "runner", "all",
                episode, step)


def _choice(chosen: int, **extra: Any) -> PolicyTrace:
    return PolicyTrace(prompt_ids=[1, 2, 3], token_ids=OPTIONS[chosen], logprobs=[-1.1],
                       legal=[0, 1, 2], options=OPTIONS, **extra)


def _envelopes() -> list[Envelope]:
    """Episode 0: both act at step 0, only bob at step 1; episode 1: both act once."""
    said = PolicyTrace(prompt_ids=[1, 2], token_ids=[5, 6], logprobs=[-0.5, -0.1])
    greedy = PolicyTrace(prompt_ids=[1, 2], token_ids=[5, 6], logprobs=[-0.5, -0.1],
                         temperature=0.0)
    only = PolicyTrace(prompt_ids=[1], token_ids=[7], logprobs=[0.0], legal=[0], options=[[7]])
    return [
        _env(Control(command="hello"), "alice", "all", 0, 0),
        _obs("alice", 0, 0, "alice sees the red target"), _obs("bob", 0, 0, "bob sees three"),
        _env(Hint(text="the red one"), "alice", "bob", 0, 0, said),
        _act("bob", 0, 0, 2, _choice(2)), _act("alice", 0, 0, 0, only),
        _reward("alice", 0, 0, 0.0), _reward("bob", 0, 0, 0.5),
        _obs("bob", 0, 1, "bob sees two"), _act("bob", 0, 1, 1, _choice(1)),
        _reward("alice", 0, 1, 0.25), _reward("bob", 0, 1, 1.0),  # alice paid off-turn
        _end(0, 1, {"alice": 0.25, "bob": 1.5}, True),
        _obs("alice", 1, 0, "alice sees the blue target"), _obs("bob", 1, 0, "bob sees again"),
        _env(Hint(text="blue"), "alice", "bob", 1, 0, greedy),
        _act("bob", 1, 0, 0, _choice(0, policy="ucb")), _act("alice", 1, 0, 0, only),
        _reward("alice", 1, 0, 0.0), _reward("bob", 1, 0, 0.0),
        _end(1, 0, {"alice": 0.0, "bob": 0.0}, False),
    ]


@pytest.fixture(scope="module")
def trajectories() -> Trajectories:
    return assemble(_envelopes())


def test_steps_are_grouped_per_agent_in_time_order(trajectories: Trajectories) -> None:
    keys = [(s.agent, s.episode, s.step) for s in trajectories.steps]
    assert keys == [("alice", 0, 0), ("alice", 1, 0), ("bob", 0, 0), ("bob", 0, 1), ("bob", 1, 0)]


def test_rewards_and_dones(trajectories: Trajectories) -> None:
    # alice's step-1 reward (she did not act then) goes to her latest step, step 0.
    assert [s.reward for s in trajectories.steps] == [0.25, 0.0, 0.5, 1.0, 0.0]
    assert [s.done for s in trajectories.steps] == [True, True, False, True, True]
    returns = {(e.episode, e.success): e.returns for e in trajectories.episodes}
    assert returns == {(0, True): {"alice": 0.25, "bob": 1.5}, (1, False): {"alice": 0.0,
                                                                            "bob": 0.0}}


def test_joint_record_holds_every_observation_and_message(trajectories: Trajectories) -> None:
    joint = trajectories.joint[("r", 0, 0)]
    assert {a: o.text for a, o in joint.observations.items()} == {
        "alice": "alice sees the red target", "bob": "bob sees three"}
    assert [m.payload for m in joint.messages] == [Hint(text="the red one")]
    bob = trajectories.steps[2]
    assert [m.payload for m in bob.inbox] == [Hint(text="the red one")]
    assert bob.said == () and trajectories.steps[0].said == joint.messages


def test_decisions_skip_single_choices_ucb_and_greedy_messages(
    trajectories: Trajectories,
) -> None:
    found = [(d.kind, d.agent, d.step, d.chosen) for d in trajectories.decisions]
    assert found == [("message", "alice", 0, 0), ("action", "bob", 2, 2),
                     ("action", "bob", 3, 1)]
    action = trajectories.decisions[1]
    assert action.options == OPTIONS and action.rollout_logprob == pytest.approx(-1.1)
    assert action.tokens == 3 + sum(len(option) for option in OPTIONS)


def test_critic_texts_central_and_independent(trajectories: Trajectories) -> None:
    bob = trajectories.steps[2]
    central = critic_text(trajectories, bob, "central")
    assert central.startswith("agent: bob")
    assert "alice sees the red target" in central and "bob sees three" in central
    assert 'message alice -> bob: {"text": "the red one"}' in central
    independent = critic_text(trajectories, bob, "independent")
    assert "bob sees three" in independent and "the red one" in independent
    assert "alice sees" not in independent
    alice = critic_text(trajectories, trajectories.steps[0], "independent")
    assert "bob sees" not in alice and "the red one" not in alice  # she has no inbox


@pytest.mark.parametrize("kind", ["central", "independent"])
def test_the_speak_view_has_no_message_of_its_step(trajectories: Trajectories,
                                                   kind: CriticKind) -> None:
    # A value that saw the message it judges would cancel the message's advantage.
    for step in trajectories.steps:
        speak = critic_text(trajectories, step, kind, "speak").splitlines()
        act = critic_text(trajectories, step, kind, "act").splitlines()
        assert not any(line.startswith("message") for line in speak)
        assert speak[1] == "phase: speak" and act[1] == "phase: act"
        assert act[:1] + act[2 : len(speak)] == speak[:1] + speak[2:]  # act adds messages
    bob = trajectories.steps[2]
    assert "the red one" in critic_text(trajectories, bob, kind, "act")


def test_messages_are_valued_at_speak_and_actions_at_act() -> None:
    assert [value_row(3, "message"), value_row(3, "action")] == [6, 7]


def test_tokens_of_a_mismatched_action_are_an_error() -> None:
    envelopes = _envelopes()
    bad = PolicyTrace(prompt_ids=[1], token_ids=[9, 9], logprobs=[-1.0], legal=[0, 1, 2],
                      options=OPTIONS)
    envelopes[4] = _act("bob", 0, 0, 2, bad)
    with pytest.raises(ValueError, match="tokens differ"):
        assemble(envelopes)


def test_an_action_trace_without_options_is_an_error_naming_the_step() -> None:
    envelopes = _envelopes()
    old = PolicyTrace(prompt_ids=[1], token_ids=OPTIONS[2], logprobs=[-1.0], legal=[0, 1, 2])
    envelopes[4] = _act("bob", 0, 0, 2, old)
    with pytest.raises(ValueError, match=r"bob at \('r', 0, 0\).*records no `options`"):
        assemble(envelopes)


def test_an_action_after_the_step_was_scored_is_late_and_no_sample() -> None:
    envelopes = _envelopes()
    late = envelopes.pop(4)  # bob's step-0 action, now after the step's rewards
    envelopes.insert(7, late)
    trajectories = assemble(envelopes)
    assert trajectories.steps[2].action is None
    assert [(d.agent, d.step) for d in trajectories.decisions] == [("alice", 0), ("bob", 3)]


async def test_action_score_equals_the_agents_rollout_logprob_with_exact_entropy(
    tiny: Tiny,
) -> None:
    model, tokenizer = tiny
    prompt = tokenizer("Pick a colour:", add_special_tokens=False)["input_ids"]
    options = action_options(tokenizer, COLOURS, [0, 1, 2])
    # What the agent does at rollout: engine scores, per-token means, the mixed softmax.
    engine = InferenceEngine(model, tokenizer)
    totals = await engine.score_options(prompt, options)
    await engine.aclose()
    probs = action_distribution(per_token(totals, options), temperature=1.5, epsilon=0.2)
    trace = PolicyTrace(prompt_ids=prompt, token_ids=options[1],
                        logprobs=[float(torch.log(probs[1]))], legal=[0, 1, 2], options=options,
                        temperature=1.5, epsilon=0.2)
    with torch.no_grad():
        logprob, entropy = score(model, Decision("action", "bob", 0, trace, 1), tokenizer, None)
    assert float(logprob) == pytest.approx(trace.logprobs[0], abs=1e-6)
    expected_entropy = -sum(float(p) * math.log(float(p)) for p in probs)
    assert float(entropy) == pytest.approx(expected_entropy, abs=1e-6)


def test_message_score_matches_the_samplers_logprobs(tiny: Tiny) -> None:
    model, tokenizer = tiny
    engine = InferenceEngine(model, tokenizer)
    prompt = tokenizer("Send a code:", add_special_tokens=False)["input_ids"]
    request = GenerationRequest(prompt_ids=prompt, max_new_tokens=16, temperature=1.3, top_p=0.95,
                                json_schema=CODE_SCHEMA, seed=5)
    generation = asyncio.run(engine.generate(request))
    trace = PolicyTrace(prompt_ids=prompt, token_ids=generation.token_ids,
                        logprobs=generation.logprobs, constraint=CODE_SCHEMA, temperature=1.3,
                        top_p=0.95)
    with torch.no_grad():
        logprob, entropy = score(model, Decision("message", "alice", 0, trace), tokenizer, None)
    assert float(logprob) == pytest.approx(sum(generation.logprobs), abs=1e-4)
    assert math.isfinite(float(entropy)) and float(entropy) > 0


def test_message_entropy_has_a_finite_gradient_into_the_adapter(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    peft = attach_adapters(model, ["speaker"], rank=2)
    tokens = tokenizer('{"code": "kep"}', add_special_tokens=False)["input_ids"]
    trace = PolicyTrace(prompt_ids=[1, 2, 3], token_ids=[*tokens, 2], logprobs=[-0.1],
                        constraint=CODE_SCHEMA, temperature=1.0)
    logprob, entropy = score(peft, Decision("message", "x", 0, trace), tokenizer, "speaker")
    (logprob + entropy).backward()  # type: ignore[no-untyped-call]
    grads = [p.grad for n, p in peft.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


def test_a_batch_scores_each_decision_as_it_scores_alone(tiny: Tiny) -> None:
    model, tokenizer = tiny
    options = action_options(tokenizer, COLOURS, [0, 1, 2])
    code = tokenizer('{"code": "kep"}', add_special_tokens=False)["input_ids"]
    decisions = [
        Decision("action", "bob", 0, PolicyTrace(prompt_ids=[1, 2, 3, 4, 5], token_ids=options[2],
                 logprobs=[-1.0], legal=[0, 1, 2], options=options, temperature=0.7,
                 epsilon=0.1), 2),
        Decision("message", "alice", 0, PolicyTrace(prompt_ids=[7, 8], token_ids=[*code, 2],
                 logprobs=[-0.1], constraint=CODE_SCHEMA, temperature=1.5)),
        Decision("action", "bob", 1, PolicyTrace(prompt_ids=[9], token_ids=options[0],
                 logprobs=[-1.0], legal=[0, 1, 2], options=options, temperature=1.0), 0),
        Decision("message", "alice", 1, PolicyTrace(prompt_ids=[3, 1, 4, 1, 5, 9, 2],
                 token_ids=[40, 41, 42], logprobs=[-0.3], temperature=1.0, top_p=0.9)),
    ]
    with torch.no_grad():
        together = score_batch(model, decisions, tokenizer, None)
        alone = [score(model, d, tokenizer, None) for d in decisions]
    for (logprob, entropy), (expected, expected_entropy) in zip(together, alone, strict=True):
        assert float(logprob) == pytest.approx(float(expected), abs=1e-5)
        assert float(entropy) == pytest.approx(float(expected_entropy), abs=1e-5)
