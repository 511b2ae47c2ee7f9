"""Potential-based shaping: optimal policies kept (solved exactly), judgements cached."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.llm.engine import InferenceEngine
from agents.llm.loading import load_model
from agents.model import ModelConfig
from runtime.scenario_yaml import ScenarioError
from tests.training.test_trajectory import _envelopes
from training.config import ShapingConfig, SubGoal
from training.shaping import (
    Shaper,
    matches,
    potential_bonus,
    shape,
    state_texts,
    write_subgoals,
)
from training.train_scenario import load_train_scenario
from training.trajectory import assemble

GAMMA = 0.9
# A chain: 0 -> 1 -> goal (terminal, reward 1 on arrival). Each state offers `advance` or
# `stay`. The sub-goal "in state 1" is worth potential 1; state 0 is worth 0.
ADVANCE, STAY, GOAL = 0, 1, 2
POTENTIAL = {0: 0.0, 1: 1.0, GOAL: 0.0}
Bonus = Callable[[int, int], float]  # (state, next state) -> added reward


def _move(state: int, action: int) -> int:
    return state + 1 if action == ADVANCE else state


def _optimal_policy(bonus: Bonus) -> dict[int, int]:
    """Value iteration to convergence, then the greedy action in each non-terminal state."""
    values = {0: 0.0, 1: 0.0, GOAL: 0.0}

    def q(state: int, action: int) -> float:
        after = _move(state, action)
        reward = (1.0 if after == GOAL else 0.0) + bonus(state, after)
        return reward + (0.0 if after == GOAL else GAMMA * values[after])

    for _ in range(500):
        values = {0: max(q(0, a) for a in (ADVANCE, STAY)),
                  1: max(q(1, a) for a in (ADVANCE, STAY)), GOAL: 0.0}
    return {state: max((ADVANCE, STAY), key=lambda a, s=state: q(s, a)) for state in (0, 1)}


def test_potential_shaping_keeps_the_optimal_policy_a_plain_bonus_changes_it() -> None:
    unshaped = _optimal_policy(lambda state, after: 0.0)
    assert unshaped == {0: ADVANCE, 1: ADVANCE}
    shaped = _optimal_policy(lambda state, after: potential_bonus(
        POTENTIAL[state], POTENTIAL[after], GAMMA, done=after == GOAL))
    assert shaped == unshaped
    # The same sub-goal paid as a bonus on arrival: lingering in state 1 now pays best.
    assert _optimal_policy(lambda state, after: POTENTIAL[after])[1] == STAY


def mentions_blue(subgoal: str, state: str) -> bool:
    """A predicate for the tests: the sub-goal is met when the state mentions blue."""
    return "blue" in state


def red_target(subgoal: str, state: str) -> bool:
    """A predicate for the tests: the referential game's target is red."""
    return "target is the red" in state


def _shaper(judge: Callable[[str, str], bool] | InferenceEngine) -> Shaper:
    return Shaper([SubGoal(description="The target is blue.", value=3),
                   SubGoal(description="Someone spoke.", value=1)], judge, scale=2.0)


def test_the_bonus_telescopes_to_minus_the_first_potential_per_agent_and_episode() -> None:
    trajectories = assemble(_envelopes())
    shaped = asyncio.run(shape(_shaper(mentions_blue), trajectories, gamma=1.0))
    added: dict[tuple[str, int], float] = defaultdict(float)
    first: dict[tuple[str, int], float] = {}
    for before, after, row in zip(trajectories.steps, shaped.trajectories.steps,
                                  shaped.records, strict=True):
        added[(before.agent, before.episode)] += after.reward - before.reward
        first.setdefault((before.agent, before.episode), row["potential"])
    # Episode 1 shows a blue target: both sub-goals "met" by the predicate, Phi = scale.
    assert first == {("alice", 0): 0.0, ("alice", 1): 2.0, ("bob", 0): 0.0, ("bob", 1): 2.0}
    assert added == pytest.approx({key: -phi for key, phi in first.items()})
    assert shaped.metrics()["shaping_potential"] == pytest.approx(4.0 / 5)


def test_the_ready_predicate_reads_a_subgoal_as_a_regular_expression() -> None:
    state = "listener sees: Round 3 of 3. Right so far: 2 of 2. Objects: ..."
    assert matches(r"Right so far: [1-9]", state) and matches(r"Right so far: [2-9]", state)
    assert not matches(r"Right so far: [3-9]", state)


def test_a_state_holds_every_observation_and_only_earlier_messages() -> None:
    states = state_texts(assemble(_envelopes()))
    assert "the red one" not in states[("r", 0, 0)]  # said at step 0: an action, not state
    assert "alice said" in states[("r", 0, 1)] and "the red one" in states[("r", 0, 1)]
    assert "alice sees: alice sees the red target" in states[("r", 0, 0)]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> InferenceEngine:
    return InferenceEngine(*load_model(ModelConfig(name=str(tiny_model_dir), device="cpu")))


def test_the_model_judges_each_distinct_state_once(engine: InferenceEngine) -> None:
    calls: list[int] = []
    generate = engine.generate

    async def counted(request):  # type: ignore[no-untyped-def]
        calls.append(1)
        return await generate(request)

    engine.generate = counted  # type: ignore[method-assign]
    shaper = _shaper(engine)

    async def judge_all() -> list[tuple[bool, ...]]:
        try:
            return [await shaper.met(state) for state in ("a", "b", "a", "a", "b", "c")]
        finally:
            await engine.aclose()

    try:
        verdicts = asyncio.run(judge_all())
    finally:
        del engine.generate
    assert len(calls) == 3 and verdicts[0] == verdicts[2] == verdicts[3]
    assert all(len(v) == 2 for v in verdicts)


def test_written_subgoals_are_valid_and_within_the_limit(engine: InferenceEngine) -> None:
    async def write() -> list[SubGoal]:
        try:
            return await write_subgoals(engine, "Both players pick the target.", 2)
        finally:
            await engine.aclose()

    subgoals = asyncio.run(write())
    assert 1 <= len(subgoals) <= 2 and all(goal.description.strip() for goal in subgoals)


def test_a_predicate_that_does_not_import_is_one_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nenv: {game: referential}\nagents: {a: {type: random}}\n"
                    "training:\n  shaping: {goal: win, judge: 'nowhere.at_all:judge'}\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:5.*shaping.*nowhere\.at_all"):
        load_train_scenario(path)
    with pytest.raises(ValueError, match=r"goal .* or the subgoals"):
        ShapingConfig()


def test_training_with_shaping_records_subgoals_bonuses_and_metrics(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    from tests.training.test_trainer import SCENARIO
    from training.metrics import read_metrics
    from training.trainer import train

    path = tmp_path / "codes.yaml"
    path.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    shaping = {"subgoals": [{"description": "The target is red.", "value": 2}],
               "judge": "tests.training.test_shaping:red_target"}
    scenario = load_train_scenario(path, {"training.shaping": shaping, "training.critic": "none",
                                          "training.episodes_per_iteration": 8})
    out = tmp_path / "run"
    train(scenario, out, iterations=1, progress=False)
    (row,) = read_metrics(out)
    assert 0.0 < row["shaping_potential"] < 1.0  # some targets are red, not all
    assert (out / "subgoals.json").is_file()
    lines = (out / "shaping.jsonl").read_text().splitlines()
    assert len(lines) == 16  # 8 episodes x 2 agents x 1 step
