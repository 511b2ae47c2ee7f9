"""compute_gae against hand-worked cases and Monte-Carlo returns."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.gae import compute_gae, explained_variance


def t64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_single_episode_that_ends_does_not_bootstrap() -> None:
    # gamma = 0.9, lam = 0.8, so gamma * lam = 0.72; the episode ends after step 2.
    # delta2 = 2 + 0 - 1.5             = 0.5    (done: next_value 10 is ignored)
    # delta1 = 0 + 0.9 * 1.5 - 1.0     = 0.35
    # delta0 = 1 + 0.9 * 1.0 - 0.5     = 1.4
    # A2 = 0.5
    # A1 = 0.35 + 0.72 * 0.5           = 0.71
    # A0 = 1.4 + 0.72 * 0.71           = 1.9112
    advantages, returns = compute_gae(
        rewards=t64([1, 0, 2]),
        values=t64([0.5, 1.0, 1.5]),
        dones=t64([0, 0, 1]),
        next_value=t64([10.0]).squeeze(0),
        gamma=0.9,
        lam=0.8,
    )
    torch.testing.assert_close(advantages, t64([1.9112, 0.71, 0.5]))
    torch.testing.assert_close(returns, t64([1.9112 + 0.5, 0.71 + 1.0, 0.5 + 1.5]))


def test_per_step_gamma_discounts_each_transition_by_its_own() -> None:
    # Transitions discounted by 1.0, then 0.5; lam = 1; the episode ends after step 1.
    # delta1 = 4 - 3                   = 1
    # delta0 = 0 + 1.0 * 3 - 1         = 2
    # A1 = 1, A0 = 2 + 1.0 * 1         = 3
    advantages, returns = compute_gae(
        rewards=t64([0, 4]), values=t64([1, 3]), dones=t64([0, 1]),
        next_value=t64([0.0]).squeeze(0), gamma=t64([1.0, 0.5]), lam=1.0)
    torch.testing.assert_close(advantages, t64([3.0, 1.0]))
    torch.testing.assert_close(returns, t64([4.0, 4.0]))
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(t64([0, 4]), t64([1, 3]), t64([0, 1]), t64([0.0]).squeeze(0),
                    gamma=t64([1.0]), lam=1.0)


def test_unfinished_episode_bootstraps_from_next_value() -> None:
    # As above, but no step is terminal and V(s_3) = 2.
    # delta2 = 2 + 0.9 * 2 - 1.5       = 2.3
    # A2 = 2.3
    # A1 = 0.35 + 0.72 * 2.3           = 2.006
    # A0 = 1.4 + 0.72 * 2.006          = 2.84432
    advantages, _ = compute_gae(
        rewards=t64([1, 0, 2]),
        values=t64([0.5, 1.0, 1.5]),
        dones=t64([0, 0, 0]),
        next_value=torch.tensor(2.0, dtype=torch.float64),
        gamma=0.9,
        lam=0.8,
    )
    torch.testing.assert_close(advantages, t64([2.84432, 2.006, 2.3]))


def test_episode_boundary_stops_the_recursion() -> None:
    # Two episodes back to back: steps 0-1 end (done after step 1), steps 2-3 continue.
    # gamma = 0.5, lam = 0.5, gamma * lam = 0.25, all values 1, next_value 2.
    # delta3 = 4 + 0.5 * 2 - 1 = 4
    # delta2 = 3 + 0.5 * 1 - 1 = 2.5
    # delta1 = 2 + 0       - 1 = 1     (done: no V(s_2) from the next episode)
    # delta0 = 1 + 0.5 * 1 - 1 = 0.5
    # A3 = 4;  A2 = 2.5 + 0.25 * 4 = 3.5
    # A1 = 1   (A2 does not flow back across the boundary)
    # A0 = 0.5 + 0.25 * 1 = 0.75
    advantages, _ = compute_gae(
        rewards=t64([1, 2, 3, 4]),
        values=t64([1, 1, 1, 1]),
        dones=torch.tensor([False, True, False, False]),
        next_value=torch.tensor(2.0, dtype=torch.float64),
        gamma=0.5,
        lam=0.5,
    )
    torch.testing.assert_close(advantages, t64([0.75, 1.0, 3.5, 4.0]))


def test_columns_of_a_time_major_batch_are_independent() -> None:
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    dones = torch.rand(6, 3, generator=generator) < 0.3
    next_value = torch.randn(3, generator=generator, dtype=torch.float64)
    advantages, returns = compute_gae(rewards, values, dones, next_value, gamma=0.95, lam=0.9)
    for n in range(3):
        column_adv, column_ret = compute_gae(
            rewards[:, n], values[:, n], dones[:, n], next_value[n], gamma=0.95, lam=0.9
        )
        torch.testing.assert_close(advantages[:, n], column_adv)
        torch.testing.assert_close(returns[:, n], column_ret)


def test_lambda_zero_gives_one_step_td_errors() -> None:
    rewards, values = t64([1.0, -1.0, 0.5]), t64([0.2, 0.4, 0.6])
    advantages, _ = compute_gae(
        rewards, values, t64([0, 0, 0]), torch.tensor(0.8, dtype=torch.float64), 0.9, 0.0
    )
    next_values = t64([0.4, 0.6, 0.8])
    torch.testing.assert_close(advantages, rewards + 0.9 * next_values - values)


def test_outputs_carry_no_gradient() -> None:
    values = torch.tensor([0.5, 1.0], requires_grad=True)
    advantages, returns = compute_gae(
        torch.tensor([1.0, 1.0]), values, torch.tensor([0, 1]), torch.tensor(0.0), 0.9, 0.9
    )
    assert not advantages.requires_grad
    assert not returns.requires_grad


@pytest.mark.parametrize(
    ("values_shape", "dones_shape", "next_shape"),
    [((4,), (4,), (1,)), ((3,), (4,), ()), ((4,), (4, 1), ())],
)
def test_mismatched_shapes_are_rejected(
    values_shape: tuple[int, ...], dones_shape: tuple[int, ...], next_shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError):
        compute_gae(
            torch.zeros(4),
            torch.zeros(values_shape),
            torch.zeros(dones_shape),
            torch.zeros(next_shape),
            0.9,
            0.9,
        )


def monte_carlo_returns(
    rewards: list[float], dones: list[bool], next_value: float, gamma: float
) -> list[float]:
    """Discounted return from each step to its episode's end, written forwards."""
    horizon = len(rewards)
    out = []
    for start in range(horizon):
        total, discount, step = 0.0, 1.0, start
        while True:
            total += discount * rewards[step]
            discount *= gamma
            if dones[step]:
                break
            step += 1
            if step == horizon:  # episode still running: bootstrap
                total += discount * next_value
                break
        out.append(total)
    return out


reals = st.floats(min_value=-10, max_value=10, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    horizon=st.integers(min_value=1, max_value=12),
    streams=st.integers(min_value=1, max_value=3),
    gamma=st.floats(min_value=0.0, max_value=1.0),
)
def test_lambda_one_equals_discounted_monte_carlo_returns(
    data: st.DataObject, horizon: int, streams: int, gamma: float
) -> None:
    def column(elements: st.SearchStrategy[float] | st.SearchStrategy[bool]) -> st.SearchStrategy:
        return st.lists(
            st.lists(elements, min_size=streams, max_size=streams),
            min_size=horizon,
            max_size=horizon,
        )

    rewards = data.draw(column(reals))
    values = data.draw(column(reals))
    dones = data.draw(column(st.booleans()))
    next_value = data.draw(st.lists(reals, min_size=streams, max_size=streams))

    advantages, returns = compute_gae(
        t64(rewards), t64(values), torch.tensor(dones), t64(next_value), gamma, lam=1.0
    )

    torch.testing.assert_close(returns, advantages + t64(values))
    for n in range(streams):
        expected = monte_carlo_returns(
            [row[n] for row in rewards], [row[n] for row in dones], next_value[n], gamma
        )
        torch.testing.assert_close(returns[:, n], t64(expected), atol=1e-9, rtol=1e-9)


def test_explained_variance_against_hand_values() -> None:
    returns = t64([0.0, 1.0, 1.0, 0.0])  # variance 1/3 (unbiased)
    assert explained_variance(returns, returns) == 1.0
    assert explained_variance(returns, t64([0.5] * 4)) == pytest.approx(0.0)
    # errors 0.5, -0.5, -0.5, 0.5: variance 1/3, as much as the returns': nothing explained
    assert explained_variance(returns, t64([-0.5, 1.5, 1.5, -0.5])) == pytest.approx(0.0)
    # errors -1, 1, 1, -1: variance 4/3, four times the returns': 1 - 4 = -3
    assert explained_variance(returns, t64([1.0, 0.0, 0.0, 1.0])) == pytest.approx(-3.0)


def test_explained_variance_is_undefined_when_returns_only_differ_by_round_off() -> None:
    returns = t64([1.0, 1.0 + 2e-16, 1.0 - 1e-16, 1.0])  # every episode won
    assert math.isnan(explained_variance(returns, t64([0.9, 0.8, 1.1, 1.0])))
    assert math.isnan(explained_variance(t64([1.0]), t64([0.0])))
