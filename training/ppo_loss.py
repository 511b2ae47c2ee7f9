"""The PPO loss: clipped surrogate, clipped value loss, entropy bonus, KL penalty.

Follows CleanRL's ppo.py term by term, plus a KL penalty to a reference policy
(the base model with the LoRA adapter off) and an optional mask, because an LLM
policy's log-probs come per generated token with padding in between.

    total = policy + value_coef * value - entropy_coef * entropy + kl_coef * kl
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.config import PPOConfig


@dataclass(frozen=True)
class PPOLossOutput:
    """The loss and its parts, each a scalar tensor.

    Attributes:
        total: what to call `.backward()` on.
        policy: clipped surrogate loss (to minimise).
        value: value loss, 0.5 * squared error (clipped when `config.clip_value`).
        entropy: mean entropy (the bonus is subtracted from `total`).
        kl: mean k3 estimate of KL(new || reference); 0 without a reference.
        approx_kl: CleanRL's ((ratio - 1) - log ratio).mean(), KL(old || new); no gradient.
        clipfrac: fraction of ratios outside 1 ± clip_coef; no gradient.
    """

    total: Tensor
    policy: Tensor
    value: Tensor
    entropy: Tensor
    kl: Tensor
    approx_kl: Tensor
    clipfrac: Tensor


def ppo_loss(
    new_logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    new_values: Tensor | None,
    old_values: Tensor | None,
    returns: Tensor | None,
    entropy: Tensor | None,
    ref_logprobs: Tensor | None,
    config: PPOConfig,
    mask: Tensor | None = None,
    value_mask: Tensor | None = None,
) -> PPOLossOutput:
    """PPO loss of one minibatch.

    Policy-side tensors (`new_logprobs`, `old_logprobs`, `entropy`, `ref_logprobs`,
    `mask`) share one shape: [B] for one log-prob per sample, or [B, L] per token.
    `advantages` must broadcast to it ([B, 1] gives each token its sequence's
    advantage). Value-side tensors (`new_values`, `old_values`, `returns`,
    `value_mask`) share their own shape. Only `new_*` tensors carry gradient; the
    rest are detached here, so a stray graph on them cannot leak an update.

    Args:
        new_logprobs: log pi_theta(a) under the policy being trained.
        old_logprobs: log-probs at rollout time (of the distribution actually sampled from).
        advantages: advantage estimates; standardised here when
            `config.normalise_advantages` (over the masked elements when `advantages`
            has the mask's shape, else over all of its elements).
        new_values: critic outputs being trained; None when there is no critic.
        old_values: critic outputs at rollout time; needed when `config.clip_value`.
        returns: value targets; needed with `new_values`.
        entropy: policy entropy per sample/token; None to skip the bonus.
        ref_logprobs: log-probs of the same actions under the reference policy;
            None to skip the KL penalty.
        config: the coefficients.
        mask: 1 for real tokens, 0 for padding; None means all real.
        value_mask: the same for the value tensors.

    Returns:
        The total loss and its parts.
    """
    old_logprobs = old_logprobs.detach()
    advantages = advantages.detach()
    if config.normalise_advantages:
        same_shape = mask is not None and mask.shape == advantages.shape
        advantages = normalise_advantages(advantages, mask if same_shape else None)

    logratio = new_logprobs - old_logprobs
    ratio = logratio.exp()
    # Minimise the negative of the pessimistic (min) surrogate, as CleanRL.
    surrogate = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - config.clip_coef, 1.0 + config.clip_coef)
    policy = masked_mean(torch.max(surrogate, clipped), mask)

    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - logratio, mask)
        clipfrac = masked_mean(((ratio - 1.0).abs() > config.clip_coef).to(ratio.dtype), mask)

    zero = new_logprobs.new_zeros(())
    value = zero if new_values is None else value_loss(new_values, old_values, returns, config,
                                                       value_mask)
    entropy_mean = zero if entropy is None else masked_mean(entropy, mask)
    kl = zero if ref_logprobs is None else masked_mean(k3_kl(new_logprobs, ref_logprobs), mask)

    total = (
        policy
        + config.value_coef * value
        - config.entropy_coef * entropy_mean
        + config.kl_coef * kl
    )
    return PPOLossOutput(
        total=total,
        policy=policy,
        value=value,
        entropy=entropy_mean,
        kl=kl,
        approx_kl=approx_kl,
        clipfrac=clipfrac,
    )


def k3_kl(new_logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-element k3 estimate of KL(new || ref) from log-probs of sampled actions.

    With r = ref / new, k3 = (r - 1) - log r = exp(ref - new) - (ref - new) - 1
    (Schulman, "Approximating KL divergence", 2020). Its expectation under the new
    policy is the exact KL; unlike the naive log(new / ref) it is never negative
    and has low variance when the two policies are close. The gradient flows
    through `new_logprobs` only.
    """
    log_r = ref_logprobs.detach() - new_logprobs
    return log_r.exp() - log_r - 1.0


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of `x` over the elements where `mask` is 1 (all when mask is None).

    An all-zero mask gives 0 rather than NaN, so an empty minibatch adds nothing.
    Padding is selected away rather than multiplied by 0, so a NaN or inf there
    does not reach the value; it should still be finite, or its NaN gradient would.
    """
    if mask is None:
        return x.mean()
    keep = mask.to(torch.bool).expand_as(x)
    return torch.where(keep, x, torch.zeros_like(x)).sum() / keep.sum().clamp(min=1)


def normalise_advantages(advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    """Standardise advantages to zero mean and unit (sample) std, as CleanRL.

    With fewer than two elements the std is undefined; the advantages are then
    only centred (a single sample's advantage becomes 0, as in any standardisation).
    """
    count = advantages.numel() if mask is None else int(mask.to(torch.bool).sum())
    mean = masked_mean(advantages, mask)
    centred = advantages - mean
    if count < 2:
        return centred
    var = masked_mean(centred.square(), mask) * count / (count - 1)
    return centred / (var.sqrt() + 1e-8)


def value_loss(new_values: Tensor, old_values: Tensor | None, returns: Tensor | None,
               config: PPOConfig, value_mask: Tensor | None = None) -> Tensor:
    """0.5 * squared error of the values, clipped around `old_values` when
    `config.clip_value` (CleanRL's `clip_vloss`)."""
    if returns is None:
        raise ValueError("returns are needed with new_values")
    returns = returns.detach()
    unclipped = (new_values - returns).square()
    if not config.clip_value:
        return 0.5 * masked_mean(unclipped, value_mask)
    if old_values is None:
        raise ValueError("old_values are needed when config.clip_value")
    old_values = old_values.detach()
    moved = (new_values - old_values).clamp(-config.value_clip_coef, config.value_clip_coef)
    clipped = (old_values + moved - returns).square()
    # The max makes clipping pessimistic: it can only remove a gradient, never add one.
    return 0.5 * masked_mean(torch.max(unclipped, clipped), value_mask)
