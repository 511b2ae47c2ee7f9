"""95% confidence intervals for reporting results over seeds and episodes.

No scipy: it is not a dependency. The t quantiles come from a table for 1 to 30
degrees of freedom (exact to 7 decimals) and, beyond, from the Cornish-Fisher
expansion of the t quantile around the normal one, whose error is below 2e-6
from 31 degrees of freedom on (a plain normal 1.96 would understate the interval
by 4% at n = 32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# 97.5% quantile of the normal distribution.
Z_975 = 1.959963984540054

# 97.5% quantiles of Student's t, index = degrees of freedom (1..30).
_T_975 = (
    math.nan,
    12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818,
    2.4469119, 2.3646243, 2.3060041, 2.2621572, 2.2281389,
    2.2009852, 2.1788128, 2.1603687, 2.1447867, 2.1314495,
    2.1199053, 2.1098156, 2.1009220, 2.0930241, 2.0859634,
    2.0796138, 2.0738731, 2.0686576, 2.0638986, 2.0595386,
    2.0555294, 2.0518305, 2.0484071, 2.0452296, 2.0422725,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom.

    Raises:
        ValueError: if df < 1.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df < len(_T_975):
        return _T_975[df]
    # Cornish-Fisher expansion in powers of 1/df (Abramowitz & Stegun 26.7.5).
    z = Z_975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its two-sided 95% t interval: mean ± t(n-1) * s / sqrt(n).

    `s` is the sample standard deviation (n - 1 in the denominator). With one
    value the interval is undefined and both bounds are NaN.

    Returns:
        (mean, low, high).

    Raises:
        ValueError: if `values` is empty.
    """
    n = len(values)
    if n == 0:
        raise ValueError("need at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan, math.nan
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * s / math.sqrt(n)
    return mean, mean - half, mean + half


def proportion_ci95(successes: int, n: int) -> tuple[float, float, float]:
    """Observed proportion and its Wilson score 95% interval.

    Wilson rather than the normal (Wald) interval because success rates near 0 or
    1 over a few dozen episodes are common here, and Wald collapses to a zero-width
    interval at 0/n and n/n.

    Returns:
        (successes / n, low, high), with 0 <= low <= high <= 1.

    Raises:
        ValueError: if n < 1 or successes is outside [0, n].
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    z2 = Z_975**2
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = Z_975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # The clamps only absorb rounding: in exact arithmetic 0 <= low <= p <= high <= 1
    # (at p = 1 the upper bound is 1 - 1e-16 without them).
    low = min(p, max(0.0, centre - half))
    high = max(p, min(1.0, centre + half))
    return p, low, high
