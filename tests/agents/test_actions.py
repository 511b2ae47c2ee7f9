"""Action distributions and option scoring: pure maths, then against the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.base import ModelConfig
from agents.llm.actions import action_distribution, action_logprob, action_options, option_scores
from agents.llm.engine import InferenceEngine
from agents.llm.loading import load_model
from agents.llm.prompts import chat_prompt_ids, conversation

NAMES = ["cooperate", "defect", "wait a moment", "go"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))


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


def test_action_options_end_with_the_end_of_turn_token(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    _, tokenizer = tiny
    options = action_options(tokenizer, NAMES, [0, 2])
    assert len(options) == 2
    assert all(option[-1] == tokenizer.eos_token_id for option in options)
    assert tokenizer.decode(options[1][:-1]) == "wait a moment"


def test_option_scores_match_full_sequence_log_likelihood(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    prompt = chat_prompt_ids(tokenizer, conversation("You play.", "Pick one."))
    options = action_options(tokenizer, NAMES, range(len(NAMES)))
    with torch.no_grad():
        scores = option_scores(model, prompt, options)
        for score, option in zip(scores.tolist(), options, strict=True):
            logits = model(input_ids=torch.tensor([prompt + option])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            expected = sum(
                float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(option)
            )
            assert score == pytest.approx(expected, abs=1e-4)


async def test_option_scores_equal_the_engine_scores(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    engine = InferenceEngine(model, tokenizer)
    prompt = chat_prompt_ids(tokenizer, conversation("You play.", "Pick one."))
    options = action_options(tokenizer, NAMES, [1, 2, 3])
    recorded = await engine.score_options(prompt, options)
    await engine.aclose()
    with torch.no_grad():
        recomputed = option_scores(model, prompt, options).tolist()
    assert recomputed == pytest.approx(recorded, abs=1e-5)


def test_action_logprob_has_gradients(
    tiny: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = tiny
    prompt = chat_prompt_ids(tokenizer, conversation("You play.", "Pick one."))
    options = action_options(tokenizer, NAMES, [0, 1])
    logprob = action_logprob(model, prompt, options, 1, temperature=30.0, epsilon=0.1)
    assert logprob.ndim == 0 and float(logprob.detach()) < 0
    grads = torch.autograd.grad(logprob, list(model.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)  # every weight, the prompt's layers included
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_options_are_compared_by_mean_token_log_prob() -> None:
    from agents.llm.actions import per_token

    # "walk away" (2 tokens, -2 in all) against a long offer (8 tokens, -4 in all):
    # summed, the short name wins; per token, the offer is the likelier answer.
    scores = per_token([-2.0, -4.0], [[1, 2], [3] * 8])
    assert scores.tolist() == [-1.0, -0.5]
    probs = action_distribution(scores, temperature=1.0, epsilon=0.0)
    assert probs[1] > probs[0]
