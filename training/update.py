"""The PPO update of one iteration: values and advantages, then epochs over minibatches.

`prepare_batch` runs once per rollout (the critic's reading and values, GAE, old and
reference log-probs, no gradients); `ppo_update` runs the epochs: per minibatch, new
log-probs with gradients under each decision's adapter and the policy loss, a clipped
step of the actors' adapters; then the critic's new values and the value loss, a
clipped step of the critic (its heads, and its own adapters for the LoRA critic). The
two losses share no parameter, so two backward passes are one joint loss's, and the
critic's cost can be timed on its own (`critic_s`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from agents.llm.policy import Score
from training.config import PPOConfig
from training.critic import Critic, CriticRows, value_row
from training.gae import compute_gae
from training.ppo_loss import ppo_loss, value_loss
from training.trajectory import Decision, Trajectories, score_batch


@dataclass(frozen=True)
class Batch:
    """One iteration's training data.

    Policy side, one entry per decision: `decisions`, `advantages`,
    `old_logprobs`, `ref_logprobs` (None when `kl_coef` is 0: no KL, no
    reference pass). Value side, two rows per agent-step (speak, act): `rows` (what the
    critic reads), `old_values` (its outputs at rollout) and `targets` (normalised
    returns), all None without a critic; `values` and `returns` in reward units, and
    `critic_s`, the time the critic took to read the rollout and value it.
    """

    decisions: list[Decision]
    advantages: Tensor
    old_logprobs: Tensor
    ref_logprobs: Tensor | None
    rows: CriticRows | None
    old_values: Tensor | None
    targets: Tensor | None
    values: Tensor
    returns: Tensor
    critic_s: float = 0.0


def prepare_batch(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                  critic: Critic | None, trajectories: Trajectories,
                  decisions: list[Decision], config: PPOConfig) -> Batch:
    """Steps 3-5: the critic's values, GAE, old and reference log-probs."""
    rows = old_values = targets = None
    values = torch.zeros(2 * len(trajectories.steps))
    began = time.perf_counter()
    if critic is not None:
        rows = critic.prepare(model, tokenizer, trajectories)
        with torch.no_grad():  # the head's own (normalised) outputs, for clipping
            old_values = critic(model, rows, torch.arange(len(rows.agents)))
        values = critic.normaliser.denormalise(old_values)
    critic_s = time.perf_counter() - began
    advantages, returns = _gae(trajectories, values, config)
    if critic is not None:
        critic.normaliser.update(returns)
        targets = critic.normaliser.normalise(returns)
    else:
        advantages = returns - returns.mean()  # REINFORCE with the batch's mean as baseline
    with torch.no_grad():
        old = ([lp for lp, _ in score_all(model, tokenizer, decisions)]
               if config.recompute_logprobs
               else [torch.tensor(d.rollout_logprob, dtype=torch.float64) for d in decisions])
        ref = ([lp for lp, _ in score_all(model, tokenizer, decisions, reference=True)]
               if config.kl_coef > 0 else None)
    index = torch.tensor([value_row(d.step, d.kind) for d in decisions], dtype=torch.long)
    return Batch(decisions, advantages[index], _stack(old), None if ref is None else _stack(ref),
                 rows, old_values, targets, values, returns, critic_s)


def score_all(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
              decisions: list[Decision], reference: bool = False) -> list[Score]:
    """(log-prob, entropy) of each decision under its own adapter, one batch per adapter.

    With `reference`, every decision is scored under the base model instead (the
    KL anchor).
    """
    groups: dict[str | None, list[int]] = {}
    for index, decision in enumerate(decisions):
        groups.setdefault(None if reference else decision.trace.adapter, []).append(index)
    out: list[Score | None] = [None] * len(decisions)
    for adapter, indices in groups.items():
        scored = score_batch(model, [decisions[i] for i in indices], tokenizer, adapter)
        for i, result in zip(indices, scored, strict=True):
            out[i] = result
    return [result for result in out if result is not None]


def _stack(values: list[Tensor]) -> Tensor:
    return torch.stack(values).double().cpu() if values else torch.zeros(0, dtype=torch.float64)


def _gae(trajectories: Trajectories, values: Tensor, config: PPOConfig) -> tuple[Tensor, Tensor]:
    """Advantages and returns per value row, one GAE stream per agent.

    Each agent-step is two transitions: speak -> act (no reward, no discount),
    then act -> the next step's speak (the step's reward, discounted by gamma).
    """
    steps = trajectories.steps
    rewards = torch.tensor([r for s in steps for r in (0.0, s.reward)], dtype=torch.float32)
    dones = torch.tensor([d for s in steps for d in (False, s.done)], dtype=torch.float32)
    gammas = torch.tensor([1.0, config.gamma] * len(steps), dtype=torch.float32)
    lam = config.gae_lambda if config.uses_critic else 1.0  # no critic: Monte-Carlo returns
    advantages, returns = torch.zeros(len(rewards)), torch.zeros(len(rewards))
    start = 0
    while start < len(steps):
        end = start
        while end < len(steps) and steps[end].agent == steps[start].agent:
            end += 1
        # Every stream ends with a done step, so next_value is never used.
        rows = slice(2 * start, 2 * end)
        a, r = compute_gae(rewards[rows], values[rows].float(), dones[rows], torch.tensor(0.0),
                           gammas[rows], lam)
        advantages[rows], returns[rows] = a, r
        start = end
    return advantages, returns


def ppo_update(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
               critic: Critic | None, optimisers: dict[str, torch.optim.Optimizer],
               batch: Batch, config: PPOConfig, generator: torch.Generator) -> dict[str, float]:
    """Step 6: PPO epochs over minibatches; the mean of each loss part, and `critic_s`
    (the critic's share of the update's time, plus its reading of the rollout)."""
    n, m = len(batch.decisions), len(batch.returns)
    chunks = max(1, min(config.minibatches, n if n else m))
    sums: dict[str, float] = {}
    count, critic_s = 0, batch.critic_s
    for _ in range(config.epochs):
        decision_order = torch.randperm(n, generator=generator)
        step_order = torch.randperm(m, generator=generator)
        for d_idx, s_idx in zip(decision_order.tensor_split(chunks),
                                step_order.tensor_split(chunks), strict=True):
            parts = _policy_loss(model, tokenizer, batch, d_idx, config)
            _step(optimisers["actor"], parts["total"], config)
            began = time.perf_counter()
            if critic is not None:
                parts["value_loss"] = _value_loss(model, critic, batch, s_idx, config)
                _step(optimisers["critic"], config.value_coef * parts["value_loss"], config)
            critic_s += time.perf_counter() - began
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            count += 1
    return {key: total / count for key, total in sums.items()} | {"critic_s": critic_s}


def _step(optimiser: torch.optim.Optimizer, loss: Tensor, config: PPOConfig) -> None:
    """One clipped optimiser step on `loss` (nothing when it has no gradient)."""
    optimiser.zero_grad(set_to_none=True)
    if not loss.requires_grad:
        return
    loss.backward()  # type: ignore[no-untyped-call]
    params = [p for group in optimiser.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimiser.step()


def _policy_loss(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, batch: Batch,
                 d_idx: Tensor, config: PPOConfig) -> dict[str, Tensor]:
    """The policy's loss on decisions `d_idx`: surrogate, entropy bonus, KL penalty."""
    if len(d_idx):
        scored = score_all(model, tokenizer, [batch.decisions[i] for i in d_idx.tolist()])
        new_logprobs = torch.stack([lp for lp, _ in scored]).cpu()
        entropy = torch.stack([h for _, h in scored]).cpu()
        old, adv = batch.old_logprobs[d_idx], batch.advantages[d_idx].double()
        ref = batch.ref_logprobs[d_idx] if batch.ref_logprobs is not None else None
    else:  # no decision to learn from: the policy terms are zero, the critic still learns
        new_logprobs = entropy = old = adv = torch.zeros(1, dtype=torch.float64)
        ref = None
    out = ppo_loss(new_logprobs, old, adv, None, None, None, entropy, ref, config)
    return {"total": out.total, "policy_loss": out.policy, "entropy": out.entropy,
            "kl": out.kl, "approx_kl": out.approx_kl, "clipfrac": out.clipfrac}


def _value_loss(model: torch.nn.Module, critic: Critic, batch: Batch, s_idx: Tensor,
                config: PPOConfig) -> Tensor:
    """The critic's loss on value rows `s_idx` (clipped around the rollout's values)."""
    assert batch.rows is not None and batch.old_values is not None
    assert batch.targets is not None
    new_values = critic(model, batch.rows, s_idx)
    return value_loss(new_values, batch.old_values[s_idx], batch.targets[s_idx], config)
