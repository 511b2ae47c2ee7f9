"""`parley analyze game`: pygambit's equilibria against a brute-force support enumeration."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from runtime.cli import main
from runtime.scenario import load_scenario
from training.analysis.game import NormalForm, analyze_game, normal_form

SCENARIOS = Path(__file__).parents[2] / "scenarios"
Profile = tuple[tuple[float, ...], tuple[float, ...]]


def support_enumeration(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
                        ) -> list[Profile]:
    """Every Nash equilibrium of a non-degenerate bimatrix game, by equal-size supports:
    the other player's mix makes each player indifferent over its support, and nothing
    outside the support pays more. Written here so the library is checked against it."""
    m, n = a.shape
    found: list[Profile] = []
    for k in range(1, min(m, n) + 1):
        for rows, cols in itertools.product(itertools.combinations(range(m), k),
                                            itertools.combinations(range(n), k)):
            y = _indifferent(a[np.ix_(rows, cols)], cols, n)  # column mix: rows indifferent
            x = _indifferent(b[np.ix_(rows, cols)].T, rows, m)
            if x is None or y is None:
                continue
            row_values, col_values = a @ y, x @ b
            if (row_values.max() <= row_values[list(rows)].min() + 1e-9
                    and col_values.max() <= col_values[list(cols)].min() + 1e-9):
                found.append((tuple(np.round(x, 6)), tuple(np.round(y, 6))))
    return sorted(found)


def _indifferent(payoff: npt.NDArray[np.float64], support: tuple[int, ...], size: int
                 ) -> npt.NDArray[np.float64] | None:
    """Probabilities on `support` that equalise the rows of `payoff`; None if none exist."""
    k = len(support)
    system = np.vstack([np.hstack([payoff, -np.ones((k, 1))]),
                        np.hstack([np.ones((1, k)), np.zeros((1, 1))])])
    try:
        solution = np.linalg.solve(system, np.append(np.zeros(k), 1.0))
    except np.linalg.LinAlgError:
        return None
    if (solution[:k] < -1e-9).any():
        return None
    mix = np.zeros(size)
    mix[list(support)] = np.clip(solution[:k], 0.0, None)
    return mix


def library_profiles(game: NormalForm) -> list[Profile]:
    analysis = analyze_game(game)
    return sorted((tuple(round(p, 6) for p in eq.strategies["player_0"].values()),
                   tuple(round(p, 6) for p in eq.strategies["player_1"].values()))
                  for eq in analysis.equilibria)


def bimatrix(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> NormalForm:
    actions = [[f"r{i}" for i in range(a.shape[0])], [f"c{j}" for j in range(a.shape[1])]]
    return NormalForm("random", ["player_0", "player_1"], actions, np.stack([a, b], axis=-1))


@pytest.mark.parametrize("size", [2, 3, 4])
def test_equilibria_of_random_games_match_a_support_enumeration(size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(15):  # continuous payoffs: non-degenerate with probability one
        a, b = rng.normal(size=(size, size)), rng.normal(size=(size, size))
        assert library_profiles(bimatrix(a, b)) == support_enumeration(a, b)


@pytest.mark.parametrize("preset", ["prisoners_dilemma", "stag_hunt", "rock_paper_scissors",
                                    "coordination"])
def test_equilibria_of_the_shipped_matrix_games_match_a_support_enumeration(preset: str) -> None:
    scenario = load_scenario(SCENARIOS / "matrix_pd.yaml",
                             {"env.options": {"payoffs": {"preset": preset}}})
    game = normal_form(scenario)
    a, b = game.payoffs[..., 0], game.payoffs[..., 1]
    assert library_profiles(game) == support_enumeration(a, b)


def test_prisoners_dilemma_has_one_pure_equilibrium_that_is_pareto_dominated() -> None:
    analysis = analyze_game(normal_form(load_scenario(SCENARIOS / "matrix_pd.yaml")))
    (eq,) = analysis.equilibria
    assert eq.pure and eq.strategies["player_0"] == {"cooperate": 0.0, "defect": 1.0}
    assert eq.payoffs == {"player_0": 1.0, "player_1": 1.0} and not eq.pareto_optimal
    assert analysis.best_responses["player_0"] == {"cooperate": ["defect"], "defect": ["defect"]}
    assert analysis.max_welfare == 6.0


def test_stag_hunt_has_one_pareto_optimal_equilibrium_and_two_dominated_ones() -> None:
    scenario = load_scenario(SCENARIOS / "matrix_pd.yaml",
                             {"env.options": {"payoffs": {"preset": "stag_hunt"}}})
    analysis = analyze_game(normal_form(scenario))
    stag, *others = sorted(analysis.equilibria, key=lambda eq: (-eq.welfare, not eq.pure))
    assert stag.pure and stag.pareto_optimal and stag.welfare == 8.0
    hare, mixed = others
    assert hare.pure and not mixed.pure and not hare.pareto_optimal and not mixed.pareto_optimal
    assert mixed.strategies["player_0"]["stag"] == pytest.approx(0.75)  # 4p = 3
    assert mixed.payoffs["player_0"] == pytest.approx(3.0)


def test_analyze_game_command_prints_and_writes_the_equilibria(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "game.json"
    assert main(["analyze", "game", str(SCENARIOS / "matrix_pd.yaml"), "--json", str(out),
                 "--set", "env.options.payoffs.preset=rock_paper_scissors"]) == 0
    (eq,) = json.loads(out.read_text())["equilibria"]
    assert eq["strategies"]["player_0"] == pytest.approx(
        {"rock": 1 / 3, "paper": 1 / 3, "scissors": 1 / 3})
    assert "1 Nash equilibria" in capsys.readouterr().out


def test_analyze_game_of_a_game_that_is_not_normal_form_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "game", str(SCENARIOS / "referential.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "referential is not a normal-form game" in err
