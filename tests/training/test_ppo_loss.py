"""ppo_loss term by term on tiny hand-worked batches, and PPOConfig."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from training.config import PPOConfig
from training.ppo_loss import (
    PPOLossOutput,
    k3_kl,
    masked_mean,
    normalise_advantages,
    ppo_loss,
)

# Ratios and advantages covering each branch of the clipped surrogate (clip 0.2):
#   r    A    -A*r   -A*clip(r)  max (the loss)
#   1.1  +1   -1.1   -1.1        -1.1   inside the range
#   1.5  +2   -3.0   -2.4        -2.4   clipped: no reward for moving further up
#   0.5  -1   +0.5   +0.8        +0.8   clipped: no reward for moving further down
#   0.9  -2   +1.8   +1.8        +1.8   inside the range
#   0.5  +1   -0.5   -0.8        -0.5   outside, but the unclipped term is worse: kept
#   1.5  -1   +1.5   +1.2        +1.5   outside, but the unclipped term is worse: kept
RATIOS = [1.1, 1.5, 0.5, 0.9, 0.5, 1.5]
ADVANTAGES = [1.0, 2.0, -1.0, -2.0, 1.0, -1.0]
POLICY_LOSS = (-1.1 - 2.4 + 0.8 + 1.8 - 0.5 + 1.5) / 6


def config(**overrides: float | bool) -> PPOConfig:
    """Coefficients that switch every extra off, so one term is tested at a time."""
    base: dict[str, float | bool] = {
        "clip_coef": 0.2,
        "normalise_advantages": False,
        "value_coef": 0.0,
        "entropy_coef": 0.0,
        "kl_coef": 0.0,
        "clip_value": False,
    }
    return PPOConfig.model_validate(base | overrides)


def logprobs_for(ratios: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.linspace(-2.0, -0.5, len(ratios), dtype=torch.float64)
    new = old + torch.log(torch.tensor(ratios, dtype=torch.float64))
    return new, old


def policy_only(
    new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, cfg: PPOConfig
) -> PPOLossOutput:
    return ppo_loss(new, old, adv, None, None, None, None, None, cfg)


def test_clipped_surrogate_matches_hand_computation() -> None:
    new, old = logprobs_for(RATIOS)
    out = policy_only(new, old, torch.tensor(ADVANTAGES, dtype=torch.float64), config())
    assert out.policy.item() == pytest.approx(POLICY_LOSS)
    assert out.total.item() == pytest.approx(POLICY_LOSS)


def test_clipfrac_counts_ratios_outside_the_range() -> None:
    new, old = logprobs_for(RATIOS)
    out = policy_only(new, old, torch.tensor(ADVANTAGES, dtype=torch.float64), config())
    assert out.clipfrac.item() == pytest.approx(4 / 6)  # 1.5, 0.5, 0.5, 1.5


def test_approx_kl_is_cleanrl_estimator() -> None:
    new, old = logprobs_for(RATIOS)
    out = policy_only(new, old, torch.tensor(ADVANTAGES, dtype=torch.float64), config())
    expected = sum((r - 1) - math.log(r) for r in RATIOS) / len(RATIOS)
    assert out.approx_kl.item() == pytest.approx(expected)
    assert not out.approx_kl.requires_grad


def test_clipped_surrogate_gradient_vanishes_where_clipped() -> None:
    new, old = logprobs_for(RATIOS)
    new.requires_grad_(True)
    out = policy_only(new, old, torch.tensor(ADVANTAGES, dtype=torch.float64), config())
    torch.autograd.backward(out.total)
    assert new.grad is not None
    # d/dlogp of -A * r is -A * r / N where the unclipped term is kept, else 0.
    expected = [-a * r / 6 for a, r in zip(ADVANTAGES, RATIOS, strict=True)]
    expected[1] = expected[2] = 0.0
    torch.testing.assert_close(new.grad, torch.tensor(expected, dtype=torch.float64))


def test_value_loss_clipped_takes_the_larger_error() -> None:
    # old 1.0 everywhere, clip 0.2:
    #   new  return  unclipped      clipped value   clipped err    max
    #   1.5  2.0     0.25           1.2             0.64           0.64
    #   0.9  0.0     0.81           0.9             0.81           0.81
    #   0.5  1.0     0.25           0.8             0.04           0.25
    new_values = torch.tensor([1.5, 0.9, 0.5], requires_grad=True)
    old_values = torch.ones(3)
    returns = torch.tensor([2.0, 0.0, 1.0])
    logp = torch.zeros(3)
    clipped_cfg = config(clip_value=True, value_clip_coef=0.2, value_coef=1.0)
    out = ppo_loss(
        logp, logp, torch.zeros(3), new_values, old_values, returns, None, None, clipped_cfg
    )
    assert out.value.item() == pytest.approx(0.5 * (0.64 + 0.81 + 0.25) / 3)
    torch.autograd.backward(out.total)
    assert new_values.grad is not None
    # The first sample's loss comes from the clipped value, which is flat in new_values.
    assert new_values.grad[0].item() == 0.0
    assert new_values.grad[1].item() == pytest.approx(0.9 / 3)


def test_value_loss_unclipped_is_half_squared_error() -> None:
    logp = torch.zeros(3)
    out = ppo_loss(
        logp,
        logp,
        torch.zeros(3),
        torch.tensor([1.5, 0.9, 0.5]),
        torch.ones(3),
        torch.tensor([2.0, 0.0, 1.0]),
        None,
        None,
        config(clip_value=False),
    )
    assert out.value.item() == pytest.approx(0.5 * (0.25 + 0.81 + 0.25) / 3)


def test_k3_kl_matches_formula_and_is_never_negative() -> None:
    new = torch.tensor([-1.0, -2.0, -0.7])
    ref = torch.tensor([-1.5, -1.0, -0.7])
    expected = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1, 0.0]
    torch.testing.assert_close(k3_kl(new, ref), torch.tensor(expected))
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_total_combines_the_terms_with_their_coefficients() -> None:
    new, old = logprobs_for(RATIOS)
    ref = old - 0.3
    entropy = torch.linspace(0.1, 0.6, 6, dtype=torch.float64)
    values = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    cfg = config(value_coef=0.5, entropy_coef=0.01, kl_coef=0.1)
    out = ppo_loss(
        new, old, torch.tensor(ADVANTAGES, dtype=torch.float64),
        values, values, values + 1.0, entropy, ref, cfg,
    )  # fmt: skip
    kl = sum(math.exp(-0.3 - math.log(r)) + 0.3 + math.log(r) - 1 for r in RATIOS) / 6
    assert out.value.item() == pytest.approx(0.5)  # every error is 1
    assert out.entropy.item() == pytest.approx(0.35)
    assert out.kl.item() == pytest.approx(kl)
    assert out.total.item() == pytest.approx(POLICY_LOSS + 0.5 * 0.5 - 0.01 * 0.35 + 0.1 * kl)


def test_gradient_flows_only_through_new_tensors() -> None:
    def leaf(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, requires_grad=True)

    new_lp, old_lp, ref_lp = leaf([-1.0, -0.5]), leaf([-1.2, -0.4]), leaf([-1.1, -0.6])
    adv, ret, entropy = leaf([1.0, -0.5]), leaf([0.3, 0.7]), leaf([0.8, 0.9])
    new_v, old_v = leaf([0.1, 0.5]), leaf([0.2, 0.4])
    cfg = config(value_coef=0.5, entropy_coef=0.1, kl_coef=0.1, clip_value=True)
    cfg = cfg.model_copy(update={"normalise_advantages": True})
    out = ppo_loss(new_lp, old_lp, adv, new_v, old_v, ret, entropy, ref_lp, cfg)
    torch.autograd.backward(out.total)
    for trained in (new_lp, new_v, entropy):
        assert trained.grad is not None
        assert trained.grad.abs().sum() > 0
    for constant in (old_lp, ref_lp, adv, ret, old_v):
        assert constant.grad is None


def test_zero_coefficients_leave_only_the_policy_term() -> None:
    new, old = logprobs_for(RATIOS)
    new_values = torch.linspace(0.0, 1.0, 6, dtype=torch.float64, requires_grad=True)
    out = ppo_loss(
        new, old, torch.tensor(ADVANTAGES, dtype=torch.float64),
        new_values, new_values.detach(), new_values.detach() + 3.0,
        torch.full((6,), 0.7, dtype=torch.float64), old - 1.0, config(),
    )  # fmt: skip
    # The parts are still measured (for logging) but contribute nothing.
    assert out.value.item() > 0 and out.entropy.item() > 0 and out.kl.item() > 0
    assert out.total.item() == out.policy.item()
    torch.autograd.backward(out.total)
    assert new_values.grad is not None
    assert (new_values.grad == 0).all()


def test_missing_pieces_give_zero_terms() -> None:
    new, old = logprobs_for(RATIOS)
    out = policy_only(new, old, torch.tensor(ADVANTAGES, dtype=torch.float64), config())
    assert out.value.item() == 0.0 and out.entropy.item() == 0.0 and out.kl.item() == 0.0


def test_value_loss_needs_returns_and_old_values_when_clipping() -> None:
    logp, v = torch.zeros(2), torch.zeros(2)
    with pytest.raises(ValueError, match="returns"):
        ppo_loss(logp, logp, logp, v, v, None, None, None, config())
    with pytest.raises(ValueError, match="old_values"):
        ppo_loss(logp, logp, logp, v, None, v, None, None, config(clip_value=True))


def test_mask_ignores_padding_tokens() -> None:
    # Two sequences of 3 and 2 real tokens, padded to 4 with junk that must not count.
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    keep = mask.bool()
    generator = torch.Generator().manual_seed(1)
    new = torch.randn(2, 4, generator=generator) * 0.3 - 1.0
    old = new + torch.randn(2, 4, generator=generator) * 0.3
    ref = new + torch.randn(2, 4, generator=generator) * 0.3
    entropy = torch.rand(2, 4, generator=generator)
    adv = torch.randn(2, 4, generator=generator)
    for tensor in (new, old, ref, entropy, adv):
        tensor[~keep] = 50.0  # junk, finite as the docstring asks
    cfg = config(entropy_coef=0.1, kl_coef=0.2).model_copy(update={"normalise_advantages": True})

    masked = ppo_loss(new, old, adv, None, None, None, entropy, ref, cfg, mask=mask)
    flat = ppo_loss(
        new[keep], old[keep], adv[keep], None, None, None, entropy[keep], ref[keep], cfg
    )

    for name in ("total", "policy", "entropy", "kl", "approx_kl", "clipfrac"):
        torch.testing.assert_close(getattr(masked, name), getattr(flat, name), msg=name)


def test_sequence_advantage_broadcasts_over_its_tokens() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    new = torch.tensor([[-1.0, -0.5, 0.0], [-0.2, -0.3, -0.4]])
    old = torch.tensor([[-1.1, -0.4, 0.0], [-0.2, -0.6, -0.1]])
    per_sequence = torch.tensor([[2.0], [-1.0]])
    per_token = per_sequence.expand(2, 3)
    cfg = config()
    broadcast = ppo_loss(new, old, per_sequence, None, None, None, None, None, cfg, mask=mask)
    explicit = ppo_loss(new, old, per_token, None, None, None, None, None, cfg, mask=mask)
    torch.testing.assert_close(broadcast.policy, explicit.policy)


def test_masked_mean_of_empty_mask_is_zero() -> None:
    assert masked_mean(torch.tensor([1.0, 2.0]), torch.tensor([0, 0])).item() == 0.0


def test_normalise_advantages_standardises_over_the_mask() -> None:
    adv = torch.tensor([1.0, 2.0, 3.0, 100.0])
    out = normalise_advantages(adv, torch.tensor([1, 1, 1, 0]))
    # mean 2, sample std 1 over the first three
    torch.testing.assert_close(out[:3], torch.tensor([-1.0, 0.0, 1.0]))
    assert normalise_advantages(torch.tensor([5.0])).item() == 0.0


def test_config_defaults_and_derived_sizes() -> None:
    cfg = PPOConfig(lora_rank=8, lora_alpha=16, episodes_per_iteration=10, iterations=3)
    assert cfg.critic == "central"
    assert cfg.uses_critic and not PPOConfig(critic="none").uses_critic
    assert cfg.lora_scaling == 2.0
    assert cfg.total_episodes == 30
    assert PPOConfig(minibatches=4).minibatch_size(10) == 3  # rounds up: no sample dropped


def test_config_is_frozen_and_strict() -> None:
    cfg = PPOConfig()
    with pytest.raises(ValidationError):
        cfg.gamma = 0.5
    with pytest.raises(ValidationError):
        PPOConfig(learning_rate=1e-3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        PPOConfig(critic="shared")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="minibatches"):
        PPOConfig(minibatches=8, episodes_per_iteration=4)


def test_every_config_field_is_described() -> None:
    for name, field in PPOConfig.model_fields.items():
        assert field.description, name
