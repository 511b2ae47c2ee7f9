"""ValueNormaliser: streamed statistics equal numpy's over everything seen."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.normalise import ValueNormaliser


def test_identity_before_any_update() -> None:
    norm = ValueNormaliser()
    x = torch.tensor([-1.0, 0.0, 2.5])
    torch.testing.assert_close(norm.normalise(x), x)
    torch.testing.assert_close(norm.denormalise(x), x)


def test_streamed_batches_match_numpy_over_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    # Uneven batch sizes and shapes, a large offset (where naive sum-of-squares
    # loses precision), and an empty batch.
    batches = [rng.normal(1000.0, 3.0, size=shape) for shape in [(7,), (1,), (4, 5), (0,), (33,)]]
    norm = ValueNormaliser()
    for batch in batches:
        norm.update(torch.from_numpy(batch).float())
    seen = np.concatenate([b.reshape(-1) for b in batches]).astype(np.float32)
    assert norm.count == seen.size
    assert norm.mean == pytest.approx(float(seen.astype(np.float64).mean()), rel=1e-12)
    assert norm.var == pytest.approx(float(seen.astype(np.float64).var()), rel=1e-9)
    assert norm.std == pytest.approx(float(seen.astype(np.float64).std()), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=0, max_size=20),
        min_size=1,
        max_size=6,
    )
)
def test_any_split_into_batches_gives_numpy_statistics(batches: list[list[float]]) -> None:
    norm = ValueNormaliser()
    for batch in batches:
        norm.update(torch.tensor(batch, dtype=torch.float64))
    seen = np.array([v for batch in batches for v in batch], dtype=np.float64)
    assert norm.count == seen.size
    if seen.size:
        assert norm.mean == pytest.approx(seen.mean(), abs=1e-9)
        assert norm.var == pytest.approx(seen.var(), rel=1e-9, abs=1e-9)


def test_normalise_then_denormalise_round_trips() -> None:
    norm = ValueNormaliser()
    norm.update(torch.tensor([2.0, 4.0, 6.0, 8.0]))  # mean 5, var 5
    x = torch.tensor([5.0, 5.0 + 5.0**0.5])
    torch.testing.assert_close(norm.normalise(x), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(norm.denormalise(norm.normalise(x)), x)


def test_variance_floor_keeps_constant_targets_finite() -> None:
    norm = ValueNormaliser(min_var=1e-4)
    norm.update(torch.full((10,), 3.0))
    assert norm.var == 0.0
    assert norm.normalise(torch.tensor([3.1])).item() == pytest.approx(0.1 / 1e-2)


def test_keeps_dtype_and_gradient_of_its_input() -> None:
    norm = ValueNormaliser()
    norm.update(torch.tensor([1.0, 3.0]))
    x = torch.tensor([2.0, 4.0], requires_grad=True)
    y = norm.denormalise(x)
    assert y.dtype == torch.float32
    torch.autograd.backward(y.sum())
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.ones(2))  # std 1: d(x*std+mean)/dx = 1


def test_state_round_trip_through_torch_save() -> None:
    norm = ValueNormaliser(min_var=1e-3)
    norm.update(torch.tensor([1.0, 2.0, 10.0]))
    buffer = io.BytesIO()
    torch.save(norm.state_dict(), buffer)
    buffer.seek(0)
    restored = ValueNormaliser()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.count, restored.mean, restored.var, restored.min_var) == (
        norm.count, norm.mean, norm.var, norm.min_var,
    )  # fmt: skip
    # And it keeps accumulating as the original would.
    for n in (norm, restored):
        n.update(torch.tensor([-4.0, 0.5]))
    assert restored.mean == norm.mean and restored.var == norm.var


def test_load_rejects_a_foreign_state() -> None:
    with pytest.raises(KeyError):
        ValueNormaliser().load_state_dict({"mean": torch.tensor(0.0)})
