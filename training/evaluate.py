"""Evaluate a scenario (optionally with trained adapters): means with 95% confidence intervals.

Episodes run exactly as `parley run` runs them (`runtime.session.run_scenario`), so an
evaluation measures the same agents, bus and runner that a user would see, not a
training-time shortcut. With `concurrency` above 1 the episodes run several at a time,
each on its own in-process bus with its own runner and agents (as training rollouts
do), and the agents' model calls batch in one inference engine: the same play, faster.
"""

from __future__ import annotations

import math
from typing import Any

import structlog

from runtime.scenario import Scenario
from runtime.session import RunSettings, episodes_summary, run_scenario
from training.stats import mean_ci95, proportion_ci95

log = structlog.get_logger()


def _bounds(low: float, high: float) -> list[float] | None:
    """[low, high], or None where the interval is undefined (one episode): JSON has no NaN."""
    return None if math.isnan(low) or math.isnan(high) else [low, high]


def with_intervals(summary: dict[str, Any]) -> dict[str, Any]:
    """Add 95% intervals to a run summary that has `per_episode` results.

    Adds `success_rate_ci95: [low, high]` (Wilson score interval over the episodes that
    report success; None when none do), `returns_ci95: {agent: [low, high] | None}` (t
    interval over per-episode returns; None with a single episode) and `successes`
    (episodes that succeeded, of those that report it).

    Raises:
        KeyError: if the summary has no `per_episode` list.
    """
    episodes: list[dict[str, Any]] = summary["per_episode"]
    flags = [bool(e["success"]) for e in episodes if e["success"] is not None]
    success_ci: list[float] | None = None
    if flags:
        _, low, high = proportion_ci95(sum(flags), len(flags))
        success_ci = [low, high]
    returns_ci: dict[str, list[float] | None] = {}
    for agent in summary["returns"]:
        values = [float(e["returns"].get(agent, 0.0)) for e in episodes]
        returns_ci[agent] = _bounds(*mean_ci95(values)[1:]) if values else None
    return {
        **summary,
        "successes": sum(flags) if flags else None,
        "success_rate_ci95": success_ci,
        "returns_ci95": returns_ci,
    }


async def evaluate(
    scenario: Scenario, episodes: int, seed: int, adapters: str | None = None,
    concurrency: int = 1,
) -> dict[str, Any]:
    """Run `episodes` episodes of a scenario and summarise them with 95% intervals.

    Args:
        scenario: the scenario to play (its agents, env and protocol).
        episodes: how many episodes; a few dozen give intervals worth reading.
        seed: seeds the env and every agent, as for `parley run --seed`.
        adapters: directory of trained LoRA adapters for LLM agents, or None for the base model.
        concurrency: episodes played at once (1: one after another, as `parley run`).

    Returns:
        The run summary of `run_scenario` (returns and success rate are means over the
        episodes) plus `seed`, `successes`, `success_rate_ci95` and `returns_ci95`
        (see `with_intervals`).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if concurrency > 1:
        summary = with_intervals(await _concurrently(scenario, episodes, seed, adapters,
                                                     concurrency))
    else:
        settings = RunSettings(episodes=episodes, seed=seed, adapters=adapters, live=False,
                               run_id=f"{scenario.name}-eval")
        summary = with_intervals(await run_scenario(scenario, settings))
    summary["seed"] = seed
    log.info(
        "evaluation_done",
        scenario=scenario.name,
        episodes=episodes,
        seed=seed,
        success_rate=summary["success_rate"],
        success_rate_ci95=summary["success_rate_ci95"],
    )
    return summary


async def _concurrently(scenario: Scenario, episodes: int, seed: int, adapters: str | None,
                        concurrency: int) -> dict[str, Any]:
    from agents.llm.engine import InferenceEngine
    from agents.llm.loading import load_model
    from training.rollout import collect_rollout

    engine = InferenceEngine(*load_model(scenario.model), seed=seed)
    try:
        rollout = await collect_rollout(scenario, engine, episodes, seed, concurrency, adapters)
    finally:
        await engine.aclose()
    summary = episodes_summary(scenario, rollout.results, rollout.wall_s)
    summary["llm"] = {"valid": rollout.valid, "rejected": rollout.rejected}
    return summary


def _interval(bounds: list[float] | None) -> str:
    return "[n/a]" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def render_eval(summary: dict[str, Any]) -> str:
    """A few lines for a terminal: success rate and each agent's mean return, with 95% intervals.

    Example output:
        referential: 40 episodes, seed 0
          success    0.325 [0.201, 0.479]  (13/40 episodes, Wilson 95%)
          return     speaker   0.325 [0.173, 0.477]  (t 95%)
    """
    seed = summary.get("seed")
    head = f"{summary['scenario']}: {summary['episodes']} episodes"
    lines = [head if seed is None else f"{head}, seed {seed}"]
    rate = summary.get("success_rate")
    if rate is None:
        lines.append("  success    n/a (this game reports no success)")
    else:
        flags = [e["success"] for e in summary.get("per_episode", []) if e["success"] is not None]
        count = f"{sum(map(bool, flags))}/{len(flags)} episodes, " if flags else ""
        lines.append(
            f"  success    {rate:.3f} {_interval(summary.get('success_rate_ci95'))}"
            f"  ({count}Wilson 95%)"
        )
    intervals = summary.get("returns_ci95", {})
    width = max((len(a) for a in summary["returns"]), default=0)
    for agent, mean in summary["returns"].items():
        lines.append(
            f"  return     {agent:<{width}}  {mean:.3f} {_interval(intervals.get(agent))}  (t 95%)"
        )
    incidents: dict[str, int] = summary.get("incidents", {})
    if any(incidents.values()):
        lines.append("  incidents  " + ", ".join(f"{k} {v}" for k, v in incidents.items()))
    return "\n".join(lines)
