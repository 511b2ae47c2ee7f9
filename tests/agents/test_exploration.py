"""Exploration helpers: epsilon mixing, seeded sampling, UCB statistics (no model)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from agents.llm.exploration import UCBStats, mix_uniform, one_hot, sample_index


def test_mix_uniform_epsilon_one_is_uniform() -> None:
    probs = torch.tensor([0.97, 0.02, 0.01], dtype=torch.float64)
    mixed = mix_uniform(probs, 1.0)
    assert torch.allclose(mixed, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_mix_uniform_follows_the_formula() -> None:
    probs = torch.tensor([0.7, 0.3], dtype=torch.float64)
    mixed = mix_uniform(probs, 0.2)
    expected = torch.tensor([0.8 * 0.7 + 0.1, 0.8 * 0.3 + 0.1], dtype=torch.float64)
    assert torch.allclose(mixed, expected)
    assert float(mixed.sum()) == pytest.approx(1.0)
    assert mix_uniform(probs, 0.0) is probs


def test_mix_uniform_rejects_epsilon_out_of_range() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        mix_uniform(torch.ones(2) / 2, 1.5)


def test_sample_index_never_draws_zero_probability() -> None:
    rng = random.Random(0)
    probs = torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64)
    draws = {sample_index(probs, rng) for _ in range(200)}
    assert draws == {1, 3}


def test_sample_index_frequencies_follow_probs() -> None:
    rng = random.Random(1)
    probs = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    counts = [0, 0, 0]
    for _ in range(4000):
        counts[sample_index(probs, rng)] += 1
    for count, p in zip(counts, probs.tolist(), strict=True):
        assert count / 4000 == pytest.approx(p, abs=0.03)


def test_sample_index_is_reproducible_with_seed() -> None:
    probs = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    first = [sample_index(probs, random.Random(7)) for _ in range(5)]
    again = [sample_index(probs, random.Random(7)) for _ in range(5)]
    assert first == again


def test_one_hot() -> None:
    assert one_hot(2, 4).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_ucb_tries_untried_actions_first_in_model_order() -> None:
    stats = UCBStats()
    legal = [0, 2, 5]
    # All untried: ties go to the model's preference (highest score).
    assert stats.choose(legal, c=1.0, tie_break=[-3.0, -1.0, -2.0]) == 1
    stats.update(2, 1.0)
    assert stats.choose(legal, c=1.0, tie_break=[-3.0, -1.0, -2.0]) == 2  # action 5 next


def test_ucb_prefers_higher_mean_without_bonus() -> None:
    stats = UCBStats()
    for action, reward in [(0, 1.0), (1, 0.0), (0, 1.0), (1, 0.2)]:
        stats.update(action, reward)
    assert stats.rounds == 4
    assert stats.choose([0, 1], c=0.0, tie_break=[0.0, 5.0]) == 0


def test_ucb_bonus_favours_the_less_visited_action() -> None:
    stats = UCBStats()
    for _ in range(20):
        stats.update(0, 0.5)
    stats.update(1, 0.4)
    scores = stats.scores([0, 1], c=1.0)
    assert scores[1] == pytest.approx(0.4 + math.sqrt(math.log(21) / 1))
    assert stats.choose([0, 1], c=1.0, tie_break=[1.0, 0.0]) == 1
