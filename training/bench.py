"""`parley bench train`: PPO update throughput against a bare forward-and-backward loop.

Both loops run in the same process, on the same model with the same adapters,
over the same decisions of one rollout in the same minibatches, and count the
same tokens (each decision's prompt plus its generated tokens, or plus all its
legal options for an action). The bare loop is the ceiling: per minibatch and
adapter the update's two batched forward passes with gradients (a plain
language-model loss on the message tokens; the shared-prefix option scoring of
the actions), one backward and an optimiser step; nothing else. The PPO update adds
the schema-mask replay, the sampling distribution, entropies, the loss and gradient
clipping; the critic (its own forward and backward passes: with the LoRA critic, as
many tokens again) is timed apart, so `ratio` compares the policy's update with the
ceiling and `ratio_with_critic` the whole. `prepare` (the critic's reading, old and
reference log-probs, once per iteration) is reported apart and in the total.

With several dtypes (`--dtype float32 --dtype bfloat16`) the whole benchmark runs once
per precision, each beside the machine's matmul ceiling in that precision; a token of
the update costs about two forward passes' products (the frozen base needs gradients
for its inputs, not its weights), which is how its GFLOP/s are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.llm.adapters import adapter_scope
from agents.llm.bench import beside_ceiling, forward_flops_per_token, render_side_by_side
from agents.llm.compute import on_torch_thread
from agents.llm.decoding import option_totals
from agents.llm.policy import message_logits
from training.learners import Learners, build_learners
from training.rollout import collect_rollout
from training.train_scenario import TrainScenario, load_train_scenario
from training.trainer import adapter_names, scenario_for_training
from training.trajectory import Decision, Trajectories, assemble
from training.update import ppo_update, prepare_batch

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "referential_codes.yaml"
TARGET = 0.70


@dataclass(frozen=True)
class _Setup:
    """What both loops train on: the learners and one rollout's decisions."""

    scenario: TrainScenario
    learners: Learners
    trajectories: Trajectories
    decisions: list[Decision]
    rollout_s: float


def bench_train(scenario: Path | None = None, episodes: int = 8, epochs: int = 2,
                repeats: int = 2, model: str | None = None,
                threads: int | None = None, dtype: str | None = None) -> dict[str, Any]:
    """Tokens/s of the PPO update and of the bare loop, best of `repeats` each.

    Args:
        scenario: a scenario with LLM agents (default: referential_codes.yaml).
        episodes: episodes of the one rollout whose decisions both loops train on.
        epochs: passes over the decisions per measurement.
        repeats: measurements per loop, alternating; the fastest counts (the
            machine may be shared).
        model: override the scenario's model (a folder), e.g. for a tiny model.
        threads: torch threads for the whole process (None: the scenario's
            `training.threads`, else torch's default).
        dtype: override the scenario's `model.dtype`.
    """
    setup = _setup(scenario, episodes, epochs, model, threads, dtype)
    config = setup.scenario.training
    ppo_s, prepare_s, bare_s, critic_s = on_torch_thread(_measure, setup, epochs, repeats)
    policy_s = ppo_s - critic_s
    tokens = epochs * sum(d.tokens for d in setup.decisions)
    return {
        "scenario": setup.scenario.name, "model": setup.scenario.model.name,
        "decisions": len(setup.decisions), "epochs": epochs, "tokens": tokens,
        "rollout_s": round(setup.rollout_s, 3),
        "ppo_update_s": round(ppo_s, 3), "prepare_s": round(prepare_s, 3),
        "critic_s": round(critic_s, 3), "bare_s": round(bare_s, 3),
        "critic": f"{config.critic} ({config.critic_model})" if config.uses_critic else "none",
        "ppo_tokens_per_s": round(tokens / policy_s, 1),
        "ppo_with_prepare_tokens_per_s": round(tokens / (ppo_s + prepare_s), 1),
        "bare_tokens_per_s": round(tokens / bare_s, 1),
        "ratio": round(bare_s / policy_s, 3),
        "ratio_with_critic": round(bare_s / ppo_s, 3),
        "ratio_with_prepare": round(bare_s / (ppo_s + prepare_s), 3),
        "target": TARGET, "threads": torch.get_num_threads(),
        "dtype": setup.scenario.model.dtype,
        "flops_per_token": forward_flops_per_token(setup.learners.model),
    }


def bench_train_dtypes(dtypes: list[str], **options: Any) -> list[dict[str, Any]]:
    """`bench_train` once per dtype (same scenario and seed), each with its matmul ceiling
    and the share of it the bare loop and the PPO update reach."""
    results = []
    for dtype in dtypes:
        result = bench_train(dtype=dtype, **options)
        per_token = 2 * result["flops_per_token"] / 1e9  # forward + input-gradient backward
        results.append(beside_ceiling(result, dtype, {
            "bare": result["bare_tokens_per_s"] * per_token,
            "ppo": result["ppo_tokens_per_s"] * per_token}))
    return results


def _setup(scenario: Path | None, episodes: int, epochs: int, model: str | None,
           threads: int | None, dtype: str | None) -> _Setup:
    """Load the scenario with the benchmark's overrides, build the learners, roll out once."""
    overrides: dict[str, Any] = {"training.episodes_per_iteration": episodes,
                                 "training.epochs": epochs,
                                 "training.minibatches": min(2, episodes)}
    if model is not None:
        overrides["model"] = {"name": model, "device": "cpu"}
    if dtype is not None:
        overrides["model.dtype"] = dtype
    train_scenario = load_train_scenario(scenario or DEFAULT_SCENARIO, overrides)
    config = train_scenario.training
    threads = threads or config.threads
    if threads is not None:
        torch.set_num_threads(threads)
    adapters = adapter_names(train_scenario)
    learners = build_learners(train_scenario, sorted(set(adapters.values())))
    playing = scenario_for_training(train_scenario, adapters)
    rollout = asyncio.run(collect_rollout(playing, learners.engine, episodes, config.seed,
                                          config.concurrency))
    trajectories = assemble(rollout.envelopes)
    decisions = [d for d in trajectories.decisions if d.trace.adapter is not None]
    return _Setup(train_scenario, learners, trajectories, decisions, rollout.wall_s)


def _measure(setup: _Setup, epochs: int, repeats: int) -> tuple[float, float, float, float]:
    """Best seconds of the PPO update, of its `prepare`, of the bare loop, and the critic's
    share of the update in the fastest update."""
    learners, config = setup.learners, setup.scenario.training
    lm, tokenizer = learners.model, learners.engine.tokenizer
    actor_params = [p for group in learners.optimisers["actor"].param_groups
                    for p in group["params"]]
    bare_optimiser = torch.optim.Adam(actor_params, lr=1e-6)
    ppo: list[tuple[float, float]] = []
    prepare_s, bare_s = [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        _bare(lm, setup.decisions, config.minibatches, epochs, bare_optimiser, repeat)
        bare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        batch = prepare_batch(lm, tokenizer, learners.critic, setup.trajectories,
                              setup.decisions, config)
        prepared = time.perf_counter()
        losses = ppo_update(lm, tokenizer, learners.critic, learners.optimisers, batch, config,
                            torch.Generator().manual_seed(repeat))
        ppo.append((time.perf_counter() - prepared, losses["critic_s"] - batch.critic_s))
        prepare_s.append(prepared - start)
    fastest = min(ppo)
    return fastest[0], min(prepare_s), min(bare_s), fastest[1]


def _bare(model: torch.nn.Module, decisions: list[Decision], minibatches: int, epochs: int,
          optimiser: torch.optim.Optimizer, seed: int) -> None:
    """The ceiling: batched forward with gradients, backward, step; nothing else."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(decisions), generator=generator)
        for chunk in order.tensor_split(max(1, min(minibatches, len(decisions)))):
            groups: dict[str | None, list[Decision]] = {}
            for i in chunk.tolist():
                groups.setdefault(decisions[i].trace.adapter, []).append(decisions[i])
            losses = [_bare_loss(model, group, adapter) for adapter, group in groups.items()]
            optimiser.zero_grad(set_to_none=True)
            if losses:
                torch.stack(losses).sum().backward()  # type: ignore[no-untyped-call]
                optimiser.step()


def _bare_loss(model: torch.nn.Module, decisions: list[Decision], adapter: str | None
               ) -> torch.Tensor:
    """Negative log-likelihood of the decisions' tokens, in the update's two batches."""
    actions = [d for d in decisions if d.kind == "action"]
    messages = [d for d in decisions if d.trace.token_ids and d.kind == "message"]
    loss = torch.zeros((), dtype=torch.float64)
    device = next(model.parameters()).device
    with adapter_scope(model, adapter):
        if actions:
            totals = option_totals(model, [(d.trace.prompt_ids, d.options) for d in actions], 0)
            loss = loss - sum((t[d.chosen] for d, t in zip(actions, totals, strict=True)),
                              torch.zeros((), dtype=torch.float64))
        if messages:
            traces = [d.trace for d in messages]
            for trace, own in zip(traces, message_logits(model, traces), strict=True):
                targets = torch.tensor(trace.token_ids, device=device)
                loss = loss + torch.nn.functional.cross_entropy(own, targets,
                                                                reduction="sum").double()
    return loss


def render_train_dtypes(results: list[dict[str, Any]]) -> str:
    """Each precision's lines, then the updates' speed against the first precision's."""
    def block(result: Mapping[str, Any]) -> list[str]:
        return [render_train_bench(dict(result)),
                f"  matmul ceiling {result['ceiling_gflops']} GFLOP/s: bare loop at "
                f"{result['bare_of_ceiling']:.1%} of it, PPO update at "
                f"{result['ppo_of_ceiling']:.1%}"]

    def against_first(result: Mapping[str, Any], base: Mapping[str, Any]) -> str:
        policy, whole = ("ppo_tokens_per_s", "ppo_with_prepare_tokens_per_s")
        return (f"PPO update {result['dtype']} = {result[policy] / base[policy]:.2f}x "
                f"{base['dtype']} (with prepare {result[whole] / base[whole]:.2f}x)")

    return render_side_by_side(results, block, against_first)


def render_train_bench(result: dict[str, Any]) -> str:
    """The benchmark as a few human-readable lines."""
    verdict = "meets" if result["ratio"] >= result["target"] else "misses"
    return "\n".join([
        f"PPO update benchmark: {result['scenario']} ({result['model']}), "
        f"{result['decisions']} decisions x {result['epochs']} epochs = {result['tokens']} tokens,"
        f" {result['threads']} threads",
        f"  bare forward+backward  {result['bare_tokens_per_s']:>9.1f} tokens/s"
        f"  ({result['bare_s']:.2f} s)",
        f"  PPO update (policy)    {result['ppo_tokens_per_s']:>9.1f} tokens/s"
        f"  ({result['ppo_update_s'] - result['critic_s']:.2f} s)  = {result['ratio']:.0%} of"
        f" bare ({verdict} the {result['target']:.0%} target)",
        f"  critic: {result['critic']}  +{result['critic_s']:.2f} s in the update"
        f"  (policy and critic = {result['ratio_with_critic']:.0%} of bare)",
        f"  PPO incl. prepare      {result['ppo_with_prepare_tokens_per_s']:>9.1f} tokens/s"
        f"  (+{result['prepare_s']:.2f} s features, old and reference log-probs)"
        f"  = {result['ratio_with_prepare']:.0%} of bare",
    ])
