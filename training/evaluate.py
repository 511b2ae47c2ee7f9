"""Evaluate a scenario (optionally with trained adapters): means with 95% confidence intervals.

Episodes run on the one episode path (`runtime.play`), as `parley run` runs them, so an
evaluation measures the same agents, bus and runner that a user would see. With
`concurrency` above 1 several episodes run at once, each on its own in-process bus,
and the agents' model calls batch in one inference engine: the same play, faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import structlog
from pydantic import Field

from agents.llm.engine import InferenceEngine
from runtime.play import play
from runtime.play_settings import PlaySettings, Tap
from runtime.scenario import Scenario
from runtime.summary import RunSummary
from training.stats import mean_ci95, proportion_ci95

log = structlog.get_logger()


class EvalSummary(RunSummary):
    """A run summary with 95% intervals (`parley eval --summary` writes it).

    Attributes:
        seed: the first episode's seed.
        successes: episodes that succeeded, of those that report it (None: none do).
        success_rate_ci95: Wilson score interval of the success rate.
        returns_ci95: per agent, t interval of the mean return (None with one episode).
    """

    seed: int | None = None
    successes: int | None = None
    success_rate_ci95: list[float] | None = None
    returns_ci95: dict[str, list[float] | None] = Field(default_factory=dict)


def _bounds(low: float, high: float) -> list[float] | None:
    """[low, high], or None where the interval is undefined (one episode): JSON has no NaN."""
    return None if math.isnan(low) or math.isnan(high) else [low, high]


def with_intervals(summary: RunSummary, seed: int | None = None) -> EvalSummary:
    """The summary with 95% intervals over its per-episode results (see `EvalSummary`)."""
    episodes = summary.per_episode
    flags = [bool(e.success) for e in episodes if e.success is not None]
    success_ci: list[float] | None = None
    if flags:
        _, low, high = proportion_ci95(sum(flags), len(flags))
        success_ci = [low, high]
    returns_ci: dict[str, list[float] | None] = {}
    for agent in summary.returns:
        values = [float(e.returns.get(agent, 0.0)) for e in episodes]
        returns_ci[agent] = _bounds(*mean_ci95(values)[1:]) if values else None
    return EvalSummary(**dict(summary), seed=seed, successes=sum(flags) if flags else None,
                       success_rate_ci95=success_ci, returns_ci95=returns_ci)


async def evaluate(
    scenario: Scenario, episodes: int, seed: int, adapters: str | None = None,
    concurrency: int = 1, taps: Sequence[Tap] = (), engine: InferenceEngine | None = None,
) -> EvalSummary:
    """Run `episodes` episodes of a scenario and summarise them with 95% intervals.

    Args:
        scenario: the scenario to play (its agents, env and protocol).
        episodes: how many episodes; a few dozen give intervals worth reading.
        seed: seeds the env and every agent, as for `parley run --seed`.
        adapters: directory of trained LoRA adapters for LLM agents, or None for the base model.
        concurrency: episodes played at once (1: one after another, as `parley run`).
        taps: callables that see every envelope (a recording, the message analysis).
        engine: the engine LLM agents play on (default: the process-wide one of the
            scenario's model), e.g. one holding adapters under names of its own.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    settings = PlaySettings(episodes=episodes, seed=seed, concurrency=concurrency,
                            adapters=adapters, run_id=f"{scenario.name}-eval", taps=taps,
                            engine=engine)
    summary = with_intervals(await play(scenario, settings), seed)
    log.info("evaluation_done", scenario=scenario.name, episodes=episodes, seed=seed,
             success_rate=summary.success_rate, success_rate_ci95=summary.success_rate_ci95)
    return summary


def _interval(bounds: list[float] | None) -> str:
    return "[n/a]" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def render_eval(summary: EvalSummary) -> str:
    """A few lines for a terminal: success rate and each agent's mean return, with 95% intervals.

    Example output:
        referential: 40 episodes, seed 0
          success    0.325 [0.201, 0.479]  (13/40 episodes, Wilson 95%)
          return     speaker   0.325 [0.173, 0.477]  (t 95%)
    """
    head = f"{summary.scenario}: {summary.episodes} episodes"
    lines = [head if summary.seed is None else f"{head}, seed {summary.seed}"]
    if summary.success_rate is None:
        lines.append("  success    n/a (this game reports no success)")
    else:
        count = (f"{summary.successes}/{summary.episodes - _unreported(summary)} episodes, "
                 if summary.successes is not None else "")
        lines.append(f"  success    {summary.success_rate:.3f} "
                     f"{_interval(summary.success_rate_ci95)}  ({count}Wilson 95%)")
    width = max((len(a) for a in summary.returns), default=0)
    for agent, mean in summary.returns.items():
        interval = _interval(summary.returns_ci95.get(agent))
        lines.append(f"  return     {agent:<{width}}  {mean:.3f} {interval}  (t 95%)")
    incidents = summary.incidents
    if incidents.late or incidents.failed or incidents.illegal or incidents.offline:
        lines.append(f"  incidents  late {incidents.late}, failed {incidents.failed}, "
                     f"illegal {incidents.illegal}, offline {incidents.offline}")
    return "\n".join(lines)


def _unreported(summary: RunSummary) -> int:
    """Episodes whose game reported no success (left out of the success count)."""
    return sum(e.success is None for e in summary.per_episode)
