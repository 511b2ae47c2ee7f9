"""evaluate(): scripted and random scenarios (no model) summarised with 95% intervals."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from runtime.bus import BusStats
from runtime.scenario import Scenario, load_scenario
from runtime.summary import EpisodeResult, Incidents, RunSummary
from training.evaluate import evaluate, render_eval, with_intervals
from training.stats import mean_ci95, proportion_ci95

SCENARIOS = Path(__file__).parents[2] / "scenarios"


def referential_random() -> Scenario:
    """Random speaker and listener: success about 1/3, so both outcomes occur."""
    return Scenario.model_validate(
        {
            "name": "ref-random",
            "env": {"game": "referential", "options": {"num_objects": 3}},
            "agents": {"speaker": {"type": "random"}, "listener": {"type": "random"}},
        }
    )


async def test_success_interval_is_wilson_over_the_episodes() -> None:
    summary = await evaluate(referential_random(), episodes=40, seed=0)
    flags = [e.success for e in summary.per_episode]
    assert len(flags) == 40 and 0 < sum(flags) < 40
    low, high = summary.success_rate_ci95
    assert 0.0 <= low < summary.success_rate < high <= 1.0
    assert (summary.success_rate, low, high) == proportion_ci95(sum(flags), 40)
    assert summary.successes == sum(flags)
    assert summary.seed == 0


async def test_return_intervals_contain_the_mean_of_each_agent() -> None:
    summary = await evaluate(load_scenario(SCENARIOS / "rps.yaml"), episodes=20, seed=1)
    assert summary.success_rate is None and summary.success_rate_ci95 is None
    for agent in ("player_0", "player_1"):
        values = [e.returns[agent] for e in summary.per_episode]
        assert statistics.fmean(values) == pytest.approx(summary.returns[agent])
        low, high = summary.returns_ci95[agent]
        assert low < summary.returns[agent] < high
        assert [low, high] == list(mean_ci95(values)[1:])


async def test_same_seed_gives_the_same_evaluation() -> None:
    first = await evaluate(referential_random(), episodes=10, seed=3)
    second = await evaluate(referential_random(), episodes=10, seed=3)
    assert first.per_episode == second.per_episode
    assert first.success_rate_ci95 == second.success_rate_ci95


async def test_evaluate_rejects_zero_episodes() -> None:
    with pytest.raises(ValueError, match="episodes"):
        await evaluate(referential_random(), episodes=0, seed=0)


def hand_made(returns: list[float], success: list[bool | None]) -> RunSummary:
    episodes = [EpisodeResult(episode=i, returns={"a": r}, success=s, steps=1)
                for i, (r, s) in enumerate(zip(returns, success, strict=True))]
    return RunSummary.of("toy", ["a"], episodes, wall_s=0.0, messages=BusStats(),
                         incidents=Incidents(), llm=None)


def test_with_intervals_on_known_values() -> None:
    summary = with_intervals(hand_made([1.0, 2.0, 3.0, 4.0, 5.0], [True, False, None, True, True]))
    low, high = summary.returns_ci95["a"]
    # half width = t(4) * sqrt(2.5) / sqrt(5)
    assert (low, high) == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-6)
    # the episode that reports no success is not counted
    assert summary.successes == 3
    assert summary.success_rate_ci95 == list(proportion_ci95(3, 4)[1:])


def test_one_episode_has_no_return_interval() -> None:
    summary = with_intervals(hand_made([2.0], [True]))
    assert summary.returns_ci95 == {"a": None}
    low, high = summary.success_rate_ci95
    assert 0.0 < low < high == 1.0


async def test_render_eval_shows_rates_and_intervals() -> None:
    summary = await evaluate(referential_random(), episodes=40, seed=0)
    text = render_eval(summary)
    low, high = summary.success_rate_ci95
    assert text.splitlines()[0] == "ref-random: 40 episodes, seed 0"
    assert f"{summary.success_rate:.3f} [{low:.3f}, {high:.3f}]" in text
    assert f"({summary.successes}/40 episodes, Wilson 95%)" in text
    assert "speaker" in text and "listener" in text


def test_render_eval_without_success_or_interval() -> None:
    text = render_eval(with_intervals(hand_made([2.0], [None])))
    assert "n/a (this game reports no success)" in text
    assert "2.000 [n/a]" in text
