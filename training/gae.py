"""Generalised advantage estimation (Schulman et al. 2016), as in CleanRL's ppo.py.

One difference from CleanRL: there `dones[t]` says the episode ended *before*
step t; here `dones[t]` says it ended *after* step t, which is how trajectories
built from envelopes store it (the EpisodeEnd follows the step's Reward).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    gamma: float | Tensor,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns of a time-major batch of transitions.

    The recursion, backwards over t:
        delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t
        A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    with V_T = `next_value`. Nothing is bootstrapped across an episode end, so a
    batch may hold several episodes back to back. An episode cut off by a time
    limit should bootstrap; give it done=0 and the value of its next state, or
    end the batch there and pass that value as `next_value`.

    Args:
        rewards: reward of each step, shape [T] or [T, N] (N parallel streams).
        values: V(s_t) at rollout time, same shape as `rewards`.
        dones: 1 where the episode ended after step t, else 0 (bool, int or float).
        next_value: V of the state after the last step, shape `rewards.shape[1:]`;
            ignored where `dones[T-1]` is set.
        gamma: discount factor; a tensor shaped like `rewards` gives each step's own
            (the trainer discounts by 1 between the speak and act phases of a step).
        lam: GAE lambda.

    Returns:
        (advantages, returns), each shaped like `rewards`, with returns = advantages
        + values (the critic's regression target). Both are constants: no gradient
        flows back into the inputs.

    Raises:
        ValueError: if the shapes disagree.
    """
    _check_shapes(rewards, values, dones, next_value)
    values = values.detach()
    rewards = rewards.detach().to(values.dtype)
    not_done = 1.0 - dones.detach().to(values.dtype)
    if isinstance(gamma, Tensor):
        if gamma.shape != rewards.shape:
            raise ValueError(
                f"gamma has shape {tuple(gamma.shape)}, rewards {tuple(rewards.shape)}"
            )
        gamma = gamma.detach().to(values.dtype)
    next_values = torch.cat([values[1:], next_value.detach().to(values.dtype).unsqueeze(0)])
    # The deltas do not depend on each other, so compute them at once; only the
    # lambda-discounted sum needs the loop.
    deltas = rewards + gamma * not_done * next_values - values
    advantages = torch.empty_like(values)
    running = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        discount = gamma[t] if isinstance(gamma, Tensor) else gamma
        running = deltas[t] + discount * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def explained_variance(returns: Tensor, values: Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): the share of the returns' spread the
    critic predicts (1 perfect, 0 no better than a constant, below 0 worse).

    NaN when the returns do not vary: nothing to explain. "Do not vary" is up to
    round-off, since returns that are all 1 but for 1e-16 would otherwise divide one
    round-off error by another and report -1e12.
    """
    if len(returns) < 2:
        return math.nan
    spread = float(returns.var())
    if spread <= 1e-10 * (1.0 + float(returns.pow(2).mean())):
        return math.nan
    return 1.0 - float((returns - values).var()) / spread


def _check_shapes(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor) -> None:
    if rewards.dim() not in (1, 2):
        raise ValueError(f"rewards must be [T] or [T, N], got shape {tuple(rewards.shape)}")
    if rewards.shape[0] == 0:
        raise ValueError("need at least one step")
    for name, tensor in (("values", values), ("dones", dones)):
        if tensor.shape != rewards.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, rewards {tuple(rewards.shape)}"
            )
    if next_value.shape != rewards.shape[1:]:
        raise ValueError(
            f"next_value must have shape {tuple(rewards.shape[1:])}, got {tuple(next_value.shape)}"
        )
