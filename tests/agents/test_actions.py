"""A decision's log-prob and entropy (`agents.llm.policy`), and the action distribution.

Pure maths first, then against the tiny model: what the trainer recomputes must
be what the agent sampled from. (That a message's recomputed log-probs equal the
engine's recorded ones is tested with the engine, in test_engine.py.)
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.llm.actions import action_distribution, action_options, per_token
from agents.llm.decoding import option_totals
from agents.llm.engine import Generation, GenerationRequest, InferenceEngine
from agents.llm.grammar import schema_grammar
from agents.llm.loading import load_model
from agents.llm.policy import (
    action_score,
    recorded_options,
    score_actions,
    score_messages,
    token_scores,
)
from agents.llm.prompts import chat_prompt_ids, conversation
from agents.llm.sampling import logits_width, stop_token_ids
from agents.model import ModelConfig
from protocols import PolicyTrace

NAMES = ["cooperate", "defect", "wait a moment", "go"]
CODE_SCHEMA = json.dumps({"type": "object", "properties": {"code": {"enum": ["zub", "kep"]}},
                          "required": ["code"], "additionalProperties": False})
WORD_SCHEMA = json.dumps({"type": "object",
                          "properties": {"to": {"type": "string", "enum": ["alice", "bob"]},
                                         "word": {"type": "string", "maxLength": 6}},
                          "required": ["to", "word"]})

Tiny = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Tiny:
    return load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))


def _prompt(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return chat_prompt_ids(tokenizer, conversation("You play.", "Pick one."))


def _trace(prompt: list[int], options: list[list[int]], chosen: int, temperature: float,
           epsilon: float) -> PolicyTrace:
    return PolicyTrace(prompt_ids=prompt, token_ids=options[chosen], logprobs=[-1.0],
                       legal=list(range(len(options))), options=options,
                       temperature=temperature, epsilon=epsilon)


def test_softmax_with_temperature() -> None:
    probs = action_distribution([0.0, math.log(3.0)], temperature=1.0, epsilon=0.0)
    assert probs.tolist() == pytest.approx([0.25, 0.75])
    hotter = action_distribution([0.0, math.log(3.0)], temperature=2.0, epsilon=0.0)
    root = math.sqrt(3)
    assert hotter.tolist() == pytest.approx([1 / (1 + root), root / (1 + root)])


def test_epsilon_one_is_uniform_whatever_the_scores() -> None:
    probs = action_distribution([-0.1, -80.0, -3.0], temperature=1.0, epsilon=1.0)
    assert probs.tolist() == pytest.approx([1 / 3] * 3)


def test_epsilon_mixture_formula() -> None:
    soft = action_distribution([1.0, 2.0, 4.0], temperature=0.5, epsilon=0.0)
    mixed = action_distribution([1.0, 2.0, 4.0], temperature=0.5, epsilon=0.3)
    assert torch.allclose(mixed, 0.7 * soft + 0.1)


def test_temperature_zero_is_greedy() -> None:
    probs = action_distribution([-2.0, -1.0, -5.0], temperature=0.0, epsilon=0.0)
    assert probs.tolist() == [0.0, 1.0, 0.0]
    assert action_distribution([-2.0, -1.0], 0.0, 0.5).tolist() == pytest.approx([0.25, 0.75])


def test_distribution_is_differentiable() -> None:
    scores = torch.tensor([0.5, -0.5], requires_grad=True)
    (grad,) = torch.autograd.grad(torch.log(action_distribution(scores, 1.0, 0.1)[0]), [scores])
    assert float(grad.abs().sum()) > 0


def test_options_are_compared_by_mean_token_log_prob() -> None:
    # "walk away" (2 tokens, -2 in all) against a long offer (8 tokens, -4 in all):
    # summed, the short name wins; per token, the offer is the likelier answer.
    scores = per_token([-2.0, -4.0], [[1, 2], [3] * 8])
    assert scores.tolist() == [-1.0, -0.5]
    probs = action_distribution(scores, temperature=1.0, epsilon=0.0)
    assert probs[1] > probs[0]


def test_action_score_is_the_log_of_the_sampled_distribution_with_exact_entropy() -> None:
    options = [[1, 2], [3, 4, 5, 6], [7]]
    totals = torch.tensor([-2.0, -2.0, -3.0], dtype=torch.float64)
    trace = _trace([1], options, 1, temperature=0.5, epsilon=0.3)
    logprob, entropy = action_score(totals, trace, 1)
    # Per token: -1, -0.5, -3; tempered by 0.5: -2, -1, -6; then 0.7 softmax + 0.1.
    weights = [math.exp(-2.0), math.exp(-1.0), math.exp(-6.0)]
    probs = [0.7 * w / sum(weights) + 0.1 for w in weights]
    assert float(logprob) == pytest.approx(math.log(probs[1]), abs=1e-12)
    assert float(entropy) == pytest.approx(-sum(p * math.log(p) for p in probs), abs=1e-12)


def test_a_greedy_action_has_zero_entropy_and_finite_scores() -> None:
    trace = _trace([1], [[1], [2]], 0, temperature=0.0, epsilon=0.0)
    logprob, entropy = action_score(torch.tensor([-1.0, -3.0]), trace, 0)
    assert float(logprob) == 0.0 and float(entropy) == 0.0


def test_an_action_trace_without_options_is_refused() -> None:
    trace = PolicyTrace(prompt_ids=[1], token_ids=[2], logprobs=[-1.0], legal=[0, 1])
    with pytest.raises(ValueError, match="records no `options`"):
        recorded_options(trace)
    with pytest.raises(ValueError, match="at least one token"):
        recorded_options(trace.model_copy(update={"options": [[2], []]}))


def test_action_options_end_with_the_end_of_turn_token(tiny: Tiny) -> None:
    _, tokenizer = tiny
    options = action_options(tokenizer, NAMES, [0, 2])
    assert len(options) == 2
    assert all(option[-1] == tokenizer.eos_token_id for option in options)
    assert tokenizer.decode(options[1][:-1]) == "wait a moment"


def test_option_totals_match_full_sequence_log_likelihood(tiny: Tiny) -> None:
    model, tokenizer = tiny
    prompt = _prompt(tokenizer)
    options = action_options(tokenizer, NAMES, range(len(NAMES)))
    with torch.no_grad():
        (totals,) = option_totals(model, [(prompt, options)], pad_id=0)
        for total, option in zip(totals.tolist(), options, strict=True):
            logits = model(input_ids=torch.tensor([prompt + option])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            expected = sum(
                float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(option)
            )
            assert total == pytest.approx(expected, abs=1e-4)


async def test_recomputed_action_logprob_equals_the_one_sampled_at_rollout(tiny: Tiny) -> None:
    model, tokenizer = tiny
    prompt = _prompt(tokenizer)
    options = action_options(tokenizer, NAMES, [1, 2, 3])
    # The rollout side, as the agent does it: engine totals -> per token -> distribution.
    engine = InferenceEngine(model, tokenizer)
    totals = await engine.score_options(prompt, options)
    await engine.aclose()
    sampled = action_distribution(per_token(totals, options), temperature=3.0, epsilon=0.1)
    choices = [(_trace(prompt, options, k, 3.0, 0.1), k) for k in range(len(options))]
    with torch.no_grad():
        recomputed = score_actions(model, choices)
    for (logprob, _), p in zip(recomputed, sampled, strict=True):
        assert float(logprob) == pytest.approx(math.log(float(p)), abs=1e-6)


def test_batched_action_scores_equal_each_scored_alone(tiny: Tiny) -> None:
    model, tokenizer = tiny
    long = _prompt(tokenizer)
    choices = [(_trace(long, action_options(tokenizer, NAMES, [0, 1, 2]), 2, 1.0, 0.0), 2),
               (_trace([5, 6], action_options(tokenizer, NAMES, [3, 0]), 0, 0.7, 0.2), 0)]
    with torch.no_grad():
        together = score_actions(model, choices)
        alone = [score_actions(model, [choice])[0] for choice in choices]
    for (logprob, entropy), (expected, expected_entropy) in zip(together, alone, strict=True):
        assert float(logprob) == pytest.approx(float(expected), abs=1e-5)
        assert float(entropy) == pytest.approx(float(expected_entropy), abs=1e-5)


def test_action_scores_have_gradients_into_every_weight(tiny: Tiny) -> None:
    model, tokenizer = tiny
    options = action_options(tokenizer, NAMES, [0, 1])
    [(logprob, entropy)] = score_actions(model, [(_trace(_prompt(tokenizer), options, 1,
                                                         30.0, 0.1), 1)])
    assert logprob.ndim == 0 and float(logprob.detach()) < 0 and float(entropy.detach()) > 0
    grads = torch.autograd.grad(logprob, list(model.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)  # every weight, the prompt's layers included
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_token_scores_are_those_of_the_masked_tempered_nucleus_distribution() -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = torch.log(probs).repeat(2, 1)
    allowed = torch.tensor([[True, True, True, False], [True, True, True, True]])
    trace = PolicyTrace(prompt_ids=[1], token_ids=[1, 2], logprobs=[-1.0, -1.0],
                        temperature=0.5, top_p=0.7)
    scores = token_scores(logits, trace, allowed)
    # Temperature 0.5 squares the probabilities. Row 0: token 3 masked, 0.01, 0.04, 0.09
    # remain (of 0.14); top-p cuts the smallest while the mass below stays <= 1 - top_p =
    # 0.3: 0.01 (1/14) goes. Row 1: 0.01, 0.04, 0.09, 0.16 (of 0.30): the two smallest
    # (1/6 together) go. What stays is renormalised.
    rows = [[0.04 / 0.13, 0.09 / 0.13], [0.09 / 0.25, 0.16 / 0.25]]
    expected = [math.log(rows[0][0]), math.log(rows[1][0])]
    assert scores.logprobs.tolist() == pytest.approx(expected, abs=1e-6)
    entropies = [-sum(p * math.log(p) for p in row) for row in rows]
    assert scores.entropies.tolist() == pytest.approx(entropies, abs=1e-6)
    total = scores.total()
    assert float(total.logprob) == pytest.approx(sum(expected), abs=1e-6)
    assert total.logprob.dtype == total.entropy.dtype == torch.float64


def _code_message(tokenizer: PreTrainedTokenizerBase, code: str) -> PolicyTrace:
    tokens = tokenizer(json.dumps({"code": code}), add_special_tokens=False)["input_ids"]
    return PolicyTrace(prompt_ids=[1, 2, 3], token_ids=[*tokens, tokenizer.eos_token_id],
                       logprobs=[-0.1], constraint=CODE_SCHEMA, temperature=1.3, top_p=0.95)


def test_positions_the_schema_forces_have_log_prob_and_entropy_zero(tiny: Tiny) -> None:
    model, tokenizer = tiny
    trace = _code_message(tokenizer, "kep")
    with torch.no_grad():
        [scores] = score_messages(model, [trace], tokenizer)
    grammar = schema_grammar(tokenizer, logits_width(model), stop_token_ids(model, tokenizer))
    forced = grammar.replay_masks(CODE_SCHEMA, trace.token_ids).sum(dim=-1) == 1
    assert forced.any() and not forced.all()
    assert torch.all(scores.logprobs[forced] == 0) and torch.all(scores.entropies[forced] == 0)
    assert torch.all(torch.isfinite(scores.logprobs)) and torch.all(scores.entropies[~forced] > 0)


def test_batched_message_scores_equal_each_scored_alone(tiny: Tiny) -> None:
    model, tokenizer = tiny
    free = PolicyTrace(prompt_ids=[3, 1, 4, 1, 5, 9, 2], token_ids=[40, 41, 42],
                       logprobs=[-0.3], temperature=1.0, top_p=0.9)
    traces = [_code_message(tokenizer, "zub"), free]
    with torch.no_grad():
        together = score_messages(model, traces, tokenizer)
        alone = [score_messages(model, [trace], tokenizer)[0] for trace in traces]
    for scores, expected in zip(together, alone, strict=True):
        assert torch.allclose(scores.logprobs, expected.logprobs, atol=1e-5)
        assert torch.allclose(scores.entropies, expected.entropies, atol=1e-5)


def test_message_scores_carry_gradients(tiny: Tiny) -> None:
    model, tokenizer = tiny
    trace = PolicyTrace(prompt_ids=[1, 5, 9], token_ids=[17, 4, 2], logprobs=[-1.0] * 3,
                        temperature=0.8, top_p=0.9)
    [scores] = score_messages(model, [trace], tokenizer)
    (grad,) = torch.autograd.grad(scores.total().logprob, [model.model.embed_tokens.weight])
    assert float(grad.abs().sum()) > 0


def test_a_message_without_tokens_is_refused(tiny: Tiny) -> None:
    model, tokenizer = tiny
    empty = PolicyTrace(prompt_ids=[1, 5], token_ids=[], logprobs=[])
    with pytest.raises(ValueError, match="at least one token"):
        score_messages(model, [empty], tokenizer)


@pytest.mark.parametrize(("temperature", "top_p", "schema"), [
    (0.0, 1.0, None), (1.0, 1.0, None), (0.7, 0.9, None), (0.0, 1.0, WORD_SCHEMA),
    (1.3, 0.8, WORD_SCHEMA)])
async def test_recomputed_message_logprobs_equal_the_ones_sampled_at_rollout(
    tiny: Tiny, temperature: float, top_p: float, schema: str | None) -> None:
    model, tokenizer = tiny
    texts = ["Hi.", "Tell bob the plan, briefly.", "Who goes first? Answer with a name and a word."]
    requests = [GenerationRequest(tokenizer.encode(text), 12, temperature, top_p, schema, seed=i)
                for i, text in enumerate(texts)]  # prompts of different lengths: padding
    engine = InferenceEngine(model, tokenizer, seed=0)
    generations = await asyncio.gather(*(engine.generate(r) for r in requests))
    await engine.aclose()
    traces = [_recorded(request, generation)
              for request, generation in zip(requests, generations, strict=True)]
    with torch.no_grad():
        recomputed = score_messages(model, traces, tokenizer)  # one batch, as the trainer does
    for generation, scores in zip(generations, recomputed, strict=True):
        assert len(generation.logprobs) == len(generation.token_ids) > 0
        expected = torch.tensor(generation.logprobs)
        assert torch.allclose(scores.logprobs, expected, atol=1e-5, rtol=0)


def _recorded(request: GenerationRequest, generation: Generation) -> PolicyTrace:
    """The trace an agent records for a generation."""
    return PolicyTrace(prompt_ids=request.prompt_ids, token_ids=generation.token_ids,
                       logprobs=generation.logprobs, constraint=request.json_schema,
                       temperature=request.temperature, top_p=request.top_p)
