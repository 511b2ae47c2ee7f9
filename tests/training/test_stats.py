"""Confidence intervals against published values (reference: scipy 1.17, R)."""

from __future__ import annotations

import itertools
import math

import pytest

from training.stats import mean_ci95, proportion_ci95, t_quantile_975


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, 12.7062047),
        (4, 2.7764451),
        (10, 2.2281389),
        (30, 2.0422725),
        # beyond the table: the Cornish-Fisher expansion
        (31, 2.0395134),
        (40, 2.0210754),
        (60, 2.0002978),
        (120, 1.9799304),
        (1000, 1.9623391),
    ],
)
def test_t_quantile_matches_reference_values(df: int, expected: float) -> None:
    assert t_quantile_975(df) == pytest.approx(expected, abs=5e-6)


def test_t_quantile_falls_towards_the_normal_quantile() -> None:
    quantiles = [t_quantile_975(df) for df in range(1, 200)]
    assert all(a > b for a, b in itertools.pairwise(quantiles))
    assert quantiles[-1] > 1.959963984540054


def test_mean_ci95_small_sample() -> None:
    # mean 3, s = sqrt(2.5), half width = t(4) * s / sqrt(5) = 2.7764451 * 0.7071068
    mean, low, high = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert low == pytest.approx(1.0367568, abs=1e-6)
    assert high == pytest.approx(4.9632432, abs=1e-6)


def test_mean_ci95_large_sample_uses_t_not_normal() -> None:
    # 0..39: mean 19.5; scipy.stats.t.interval(0.95, 39, 19.5, sem) = (15.7612121, 23.2387879)
    mean, low, high = mean_ci95([float(v) for v in range(40)])
    assert mean == 19.5
    assert low == pytest.approx(15.7612121, abs=1e-5)
    assert high == pytest.approx(23.2387879, abs=1e-5)


def test_mean_ci95_of_constant_values_has_zero_width() -> None:
    assert mean_ci95([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_mean_ci95_of_one_value_has_no_interval() -> None:
    mean, low, high = mean_ci95([4.0])
    assert mean == 4.0 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        mean_ci95([])


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4901625, 0.9433178),
        (50, 100, 0.4038315, 0.5961685),
        (3, 40, 0.0258360, 0.1986423),
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
    ],
)
def test_wilson_interval_matches_reference(successes: int, n: int, low: float, high: float) -> None:
    p, lo, hi = proportion_ci95(successes, n)
    assert p == successes / n
    assert lo == pytest.approx(low, abs=1e-6)
    assert hi == pytest.approx(high, abs=1e-6)
    assert 0.0 <= lo <= p <= hi <= 1.0


def test_proportion_ci95_rejects_impossible_counts() -> None:
    for successes, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            proportion_ci95(successes, n)
