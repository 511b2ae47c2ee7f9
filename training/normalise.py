"""Running normalisation of value targets, as MAPPO's ValueNorm (without PopArt).

Returns in text games range from fractions to tens; a critic regressing them raw
learns slowly and its loss scale swings with the game. The critic therefore
predicts normalised values: targets are normalised before the value loss, and
the critic's outputs are denormalised before GAE.

MAPPO keeps debiased exponential moving averages; this keeps the exact mean and
variance of everything seen, merged batch by batch with Chan et al.'s parallel
form of Welford's algorithm, which stays accurate where the naive
sum-of-squares formula loses precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class ValueNormaliser:
    """Running mean and (population) variance of scalar value targets.

    Before any update it is the identity (mean 0, variance 1). The variance used for
    scaling is floored at `min_var`, so that a batch of equal returns does not blow
    the normalised values up.

    Args:
        min_var: floor of the variance used by `normalise` and `denormalise`.
    """

    def __init__(self, min_var: float = 1e-4) -> None:
        if min_var <= 0.0:
            raise ValueError(f"min_var must be positive, got {min_var}")
        self.min_var = min_var
        # Python floats (double precision) whatever the dtype of the batches.
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean

    @property
    def var(self) -> float:
        """Population variance of everything seen (1.0 before any update)."""
        return self._m2 / self.count if self.count > 0 else 1.0

    @property
    def std(self) -> float:
        """Standard deviation used for scaling (sqrt of the floored variance)."""
        return math.sqrt(max(self.var, self.min_var))

    def update(self, batch: Tensor) -> None:
        """Fold every element of `batch` into the running statistics."""
        flat = batch.detach().to(torch.float64).flatten()
        n = flat.numel()
        if n == 0:
            return
        batch_mean = float(flat.mean())
        batch_m2 = float((flat - batch_mean).square().sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self._m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    def normalise(self, x: Tensor) -> Tensor:
        """(x - mean) / std, in the dtype and on the device of `x`."""
        return (x - self.mean) / self.std

    def denormalise(self, x: Tensor) -> Tensor:
        """x * std + mean: the inverse of `normalise`."""
        return x * self.std + self.mean

    def state_dict(self) -> dict[str, Tensor]:
        """The statistics as tensors, for `torch.save` next to the model."""
        return {
            "count": torch.tensor(self.count, dtype=torch.int64),
            "mean": torch.tensor(self.mean, dtype=torch.float64),
            "m2": torch.tensor(self._m2, dtype=torch.float64),
            "min_var": torch.tensor(self.min_var, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore statistics saved by `state_dict`.

        Raises:
            KeyError: if a key is missing or unexpected.
        """
        expected = {"count", "mean", "m2", "min_var"}
        if set(state) != expected:
            raise KeyError(f"expected keys {sorted(expected)}, got {sorted(state)}")
        self.count = int(state["count"].item())
        self.mean = float(state["mean"].item())
        self._m2 = float(state["m2"].item())
        self.min_var = float(state["min_var"].item())
