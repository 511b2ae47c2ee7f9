"""Empirical strategies, exact values, best responses and exploitability of memory-one play.

The exact computations are checked against a second one written here: a recursion over
every full history of the repeated game (no memory-one shortcut).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from agents.strategies import MemoryOne, always, stationary, tit_for_tat
from runtime.cli import main
from runtime.games.matrix import PRESETS
from runtime.scenario import load_scenario
from training.analysis.policies import (
    best_response_value,
    empirical_strategies,
    expected_returns,
    exploitability,
)
from training.analysis.policy_report import analyze_policies
from training.trajectory import assemble

ROOT = Path(__file__).resolve().parents[2]
PD = np.asarray(PRESETS["prisoners_dilemma"][2], dtype=np.float64)


def random_memory_one(rng: np.random.Generator, n: int) -> MemoryOne:
    return MemoryOne(rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n), size=(n, n)))


def history_values(first: MemoryOne, second: MemoryOne, payoffs: np.ndarray,
                   rounds: int) -> np.ndarray:
    """Both players' expected totals, summed over every joint history."""
    n = first.actions
    total = np.zeros(2)
    for history in itertools.product(itertools.product(range(n), repeat=2), repeat=rounds):
        probability, last = 1.0, None
        for a, b in history:
            probability *= first.next_action(last)[a]
            probability *= second.next_action(None if last is None else (last[1], last[0]))[b]
            last = (a, b)
        total += probability * sum(payoffs[a, b] for a, b in history)
    return total


def history_best_response(opponent: MemoryOne, payoffs: np.ndarray, me: int,
                          rounds: int) -> float:
    """Expectimax over the full history tree: my move may depend on everything so far."""

    def best(history: tuple[tuple[int, int], ...]) -> float:
        if len(history) == rounds:
            return 0.0
        last = history[-1] if history else None
        reply = opponent.next_action(None if last is None else (last[1], last[0]))
        options = []
        for mine in range(opponent.actions):
            value = 0.0
            for theirs, p in enumerate(reply):
                cell = (mine, theirs) if me == 0 else (theirs, mine)
                value += p * (payoffs[(*cell, me)] + best((*history, (mine, theirs))))
            options.append(value)
        return max(options)

    return best(())


@pytest.mark.parametrize("n, rounds", [(2, 1), (2, 3), (3, 2), (2, 4)])
def test_exact_values_and_best_responses_match_the_full_history_tree(n: int,
                                                                     rounds: int) -> None:
    rng = np.random.default_rng(n * 10 + rounds)
    for _ in range(3):
        payoffs = rng.integers(-3, 6, size=(n, n, 2)).astype(np.float64)
        first, second = random_memory_one(rng, n), random_memory_one(rng, n)
        assert np.allclose(expected_returns(first, second, payoffs, rounds),
                           history_values(first, second, payoffs, rounds))
        assert best_response_value(second, payoffs, 0, rounds) == pytest.approx(
            history_best_response(second, payoffs, 0, rounds))
        assert best_response_value(first, payoffs, 1, rounds) == pytest.approx(
            history_best_response(first, payoffs, 1, rounds))


def test_known_exploitabilities_of_the_prisoners_dilemma() -> None:
    players = ["player_0", "player_1"]
    defect = exploitability({p: always(1, 2) for p in players}, players, PD, 5)
    cooperate = exploitability({p: always(0, 2) for p in players}, players, PD, 5)
    tft = exploitability({p: tit_for_tat(2) for p in players}, players, PD, 5)
    assert defect.nash_conv == pytest.approx(0.0)  # the only subgame-perfect equilibrium
    assert cooperate.values == {"player_0": 15.0, "player_1": 15.0}
    assert cooperate.best_responses["player_0"] == 25.0  # defect every round
    assert cooperate.nash_conv == pytest.approx(20.0)
    assert tft.best_responses["player_1"] == 17.0  # cooperate, then defect in the last round
    assert tft.exploitability == pytest.approx(2.0)


def test_uniform_play_is_worth_the_table_mean_every_round() -> None:
    uniform = stationary([0.5, 0.5])
    assert np.allclose(expected_returns(uniform, uniform, PD, 4), 4 * PD.mean(axis=(0, 1)))


async def _scripted_play(tmp_path: Path) -> list:  # type: ignore[type-arg]
    from runtime.play import play
    from runtime.play_settings import PlaySettings

    scenario = load_scenario(ROOT / "scenarios" / "matrix_pd.yaml")
    scenario = scenario.model_copy(update={"agents": {
        name: scenario.agents[name].model_validate({"type": "strategy", "options": options})
        for name, options in (("player_0", {"strategy": "tit_for_tat"}),
                              ("player_1", {"strategy": "mixed"}))}})
    kept: list = []  # type: ignore[type-arg]
    await play(scenario, PlaySettings(episodes=40, seed=3, taps=[kept.append]))
    return kept


def test_empirical_strategies_count_what_each_state_led_to(tmp_path: Path) -> None:
    envelopes = asyncio.run(_scripted_play(tmp_path))
    counted = empirical_strategies(assemble(envelopes), ["cooperate", "defect"])
    tft, uniform = counted["player_0"], counted["player_1"]
    assert tft.decisions == uniform.decisions == 40 * 5
    assert tft.strategy["opening"] == {"cooperate": 1.0, "defect": 0.0}
    for mine in ("cooperate", "defect"):
        assert tft.strategy[f"after you {mine}, they defect"]["defect"] == 1.0
        assert tft.strategy[f"after you {mine}, they cooperate"]["cooperate"] == 1.0
    assert not tft.unvisited and sum(tft.counts.values()) == 200
    assert all(abs(share["cooperate"] - 0.5) < 0.2 for share in uniform.strategy.values())


def test_cross_play_of_the_baselines_scores_each_pairing() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "matrix_pd.yaml")
    analysis = asyncio.run(analyze_policies(scenario, [], episodes=3, seed=0))
    played = analysis.cross_play
    assert played is not None
    labels = played.entrants
    assert labels == ["as written", "always cooperate", "always defect", "tit-for-tat",
                      "uniform", "equilibrium"]
    returns = dict(zip(labels, played.returns, strict=True))
    column = {label: i for i, label in enumerate(labels)}
    assert returns["always defect"][column["always cooperate"]] == [25.0, 0.0]
    assert returns["tit-for-tat"][column["always defect"]] == [4.0, 9.0]
    assert returns["tit-for-tat"][column["tit-for-tat"]] == [15.0, 15.0]
    judged = {p.label: p.exploitability for p in analysis.policies}
    assert judged["equilibrium"].nash_conv == pytest.approx(0.0)
    assert judged["tit-for-tat"].exploitability == pytest.approx(2.0)


def test_analyze_policies_writes_json_and_heatmap(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "policies"
    assert main(["analyze", "policies", str(ROOT / "scenarios" / "matrix_pd.yaml"),
                 "--episodes", "2", "--out", str(out)]) == 0
    report = json.loads((out / "policies.json").read_text())
    assert report["game"] == "prisoner's dilemma" and report["rounds"] == 5
    assert (out / "crossplay.png").stat().st_size > 0
    assert "exploitability" in capsys.readouterr().out


def test_analyze_policies_of_a_game_that_is_not_normal_form_exits_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "policies", str(ROOT / "scenarios" / "referential.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a normal-form game" in err


def test_a_recording_of_another_scenario_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "rps.jsonl"
    assert main(["run", str(ROOT / "scenarios" / "rps.yaml"), "--episodes", "1", "--quiet",
                 "--record", str(recording)]) == 0
    capsys.readouterr()
    code = main(["analyze", "policies", str(ROOT / "scenarios" / "matrix_pd.yaml"),
                 "--recording", str(recording), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not this game's actions" in err, err


def test_strategy_probabilities_that_do_not_sum_to_one_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "scenarios" / "matrix_pd.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(
        "  player_1:\n    type: scripted\n    options: {actions: [0, 0, 1]}",
        "  player_1:\n    type: strategy\n"
        "    options: {strategy: mixed, probabilities: [0.7, 0.7]}"))
    assert main(["run", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be non-negative and sum to 1" in err


def test_trained_populations_meet_in_cross_play_each_with_its_own_adapters(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from agents.llm.adapters import attach_adapters, save_adapters
    from training.analysis.crossplay import cross_play, population
    from training.analysis.policy_report import engine_with_populations

    folders = []
    for seed in (1, 2):
        peft_model = attach_adapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                     ["player_0", "player_1"], rank=2, alpha=4)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.5)
        folders.append(tmp_path / f"run_{seed}" / "adapters")
        save_adapters(peft_model, folders[-1])
    scenario = load_scenario(ROOT / "scenarios" / "ipd_cheap_talk.yaml",
                             {"model": {"name": str(tiny_model_dir)}})
    engine = engine_with_populations(scenario, folders)
    entrants = [population(scenario, f"run_{i}", f"p{i}_") for i in range(2)]
    played, games = asyncio.run(cross_play(scenario, entrants, 1, 0, 1, engine))
    assert len(played.returns) == 2 and all(len(row) == 2 for row in played.returns)
    for i, label in enumerate(played.entrants):
        for player in ("player_0", "player_1"):
            actions = [e for e in games[label][player] if e.kind == "action"
                       and e.sender == player]
            # each role is played in two pairings of 3 rounds, always with this run's adapter
            assert len(actions) == 2 * 3
            assert {e.trace.adapter for e in actions if e.trace} == {f"p{i}_{player}"}


def test_the_description_prompt_states_the_counted_strategy() -> None:
    from training.analysis.describe import description_prompt

    envelopes = asyncio.run(_scripted_play(Path()))
    trajectories = assemble(envelopes)
    names = ["cooperate", "defect"]
    tft = empirical_strategies(trajectories, names)["player_0"]
    prompt = description_prompt("player_0", tft, names)
    assert "Over 200 rounds" in prompt
    assert "In the first round (40 times) it played cooperate 100%." in prompt
    for mine in names:
        assert f"After it played {mine} and the other played defect" in prompt
        line = next(x for x in prompt.splitlines()
                    if x.startswith(f"After it played {mine} and the other played defect"))
        assert line.endswith("it played defect 100%.")


def test_the_model_describes_a_strategy_under_its_schema(tiny_model_dir: Path) -> None:
    from agents.llm.engine import InferenceEngine
    from agents.llm.loading import load_model
    from agents.model import ModelConfig
    from training.analysis.describe import DESCRIPTION_CHARS, describe_strategy

    engine = InferenceEngine(*load_model(ModelConfig(name=str(tiny_model_dir))))
    described = asyncio.run(describe_strategy(engine, "It always cooperates. Describe it."))
    assert 1 <= len(described.strategy) <= DESCRIPTION_CHARS
