"""`parley analyze policies`: empirical strategies, exploitability and cross-play, written out.

From trained adapters (one folder per population) the entrants play each other (see
`training.analysis.crossplay`); from a recording, its agents' strategies are counted and
judged without playing. Either way each policy gets its memory-one strategy per player,
the exact values of that joint strategy, each player's best-response value and the
policy's NashConv and exploitability (`training.analysis.policies`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, Field

from protocols import Envelope
from runtime.scenario import Scenario
from training.analysis.crossplay import (
    CrossPlay,
    Entrant,
    as_written,
    baselines,
    cross_play,
    population,
    population_label,
)
from training.analysis.game import NormalForm, analyze_game, matrix_options, normal_form
from training.analysis.policies import EmpiricalStrategy, Exploitability, empirical_strategies
from training.analysis.policies import exploitability as judge
from training.progress import status_bar
from training.trajectory import assemble

if TYPE_CHECKING:
    from agents.llm.engine import InferenceEngine

REPORT_FILE = "policies.json"
HEATMAP_FILE = "crossplay.png"


class PolicyReport(BaseModel):
    """One policy (an entrant's self-play, or a recording): what it plays and its risk."""

    label: str
    strategies: dict[str, EmpiricalStrategy]
    exploitability: Exploitability
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="player -> its strategy in the model's words.")


class PoliciesAnalysis(BaseModel):
    """What `parley analyze policies` reports."""

    game: str
    rounds: int
    actions: list[str]
    policies: list[PolicyReport]
    cross_play: CrossPlay | None = None


def judge_play(label: str, games: Mapping[str, Sequence[Envelope]], game: NormalForm,
               rounds: int) -> PolicyReport:
    """A policy's empirical strategies and how exploitable they are together over the
    repeated `game`'s `rounds`.

    `games` holds, per player, the envelopes of the games where this policy played it.
    """
    names = game.actions[0]
    strategies = {}
    for player in game.players:
        counted = empirical_strategies(assemble(games.get(player, [])), names)
        if player not in counted:
            raise ValueError(f"{label}: no action of {player} in it; the scenario's players "
                             f"are {game.players}, it has {sorted(counted) or 'none'}")
        strategies[player] = counted[player]
    policy = {agent: s.memory_one(names) for agent, s in strategies.items()}
    return PolicyReport(label=label, strategies=strategies,
                        exploitability=judge(policy, game.players, game.payoffs, rounds))


async def analyze_policies(scenario: Scenario, adapters: Sequence[Path], episodes: int,
                           seed: int, concurrency: int = 1, describe: bool = False,
                           progress: bool = False) -> PoliciesAnalysis:
    """Cross-play the scenario's agents, each trained population and the baselines.

    With `describe`, the scenario's model describes each policy's players in words;
    with `progress`, a progress bar counts the pairings.
    """
    stage, rounds = normal_form(scenario), matrix_options(scenario).rounds
    game = analyze_game(stage)
    entrants = [as_written(scenario)]
    engine = None
    if adapters:
        engine = engine_with_populations(scenario, adapters)
        entrants += [population(scenario, population_label(folder), f"p{i}_")
                     for i, folder in enumerate(adapters)]
    entrants += baselines(game)
    _unique_labels(entrants)
    with status_bar(progress, "cross-play", len(entrants) ** 2) as advance:
        played, games = await cross_play(scenario, entrants, episodes, seed, concurrency,
                                         engine, advance)
    policies = [judge_play(e.label, games[e.label], stage, rounds) for e in entrants]
    if describe:
        for policy in policies:
            await _describe(policy, scenario, stage.actions[0], engine)
    return PoliciesAnalysis(game=game.title, rounds=rounds, actions=game.actions[0],
                            policies=policies, cross_play=played)


async def recorded_policies(scenario: Scenario, envelopes: Sequence[Envelope], label: str,
                            describe: bool = False) -> PoliciesAnalysis:
    """The analysis of one recording: its agents' strategies and exploitability."""
    game, rounds = normal_form(scenario), matrix_options(scenario).rounds
    policy = judge_play(label, dict.fromkeys(game.players, envelopes), game, rounds)
    if describe:
        await _describe(policy, scenario, game.actions[0], None)
    return PoliciesAnalysis(game=game.title, rounds=rounds, actions=game.actions[0],
                            policies=[policy])


async def _describe(policy: PolicyReport, scenario: Scenario, names: list[str],
                    engine: InferenceEngine | None) -> None:
    """Fill `policy.descriptions`: the scenario's base model describes each player."""
    from agents.llm.engine import get_engine
    from training.analysis.describe import describe_strategy, description_prompt

    engine = engine or get_engine(scenario.model)
    for player, strategy in policy.strategies.items():
        prompt = description_prompt(player, strategy, names)
        policy.descriptions[player] = (await describe_strategy(engine, prompt)).strategy


def engine_with_populations(scenario: Scenario, adapters: Sequence[Path]) -> InferenceEngine:
    """The scenario model's engine holding every population's adapters, prefixed p0_, p1_..."""
    from agents.llm.adapters import load_adapters
    from agents.llm.engine import get_engine

    if not any(spec.type == "llm" for spec in scenario.agents.values()):
        raise ValueError("--adapters: this scenario has no LLM agents to play them")
    engine = get_engine(scenario.model)
    for i, folder in enumerate(adapters):
        engine.model = load_adapters(engine.model, folder, prefix=f"p{i}_")
    engine.model.eval()
    return engine


def _unique_labels(entrants: list[Entrant]) -> None:
    seen: dict[str, int] = {}
    for i, entrant in enumerate(entrants):
        count = seen[entrant.label] = seen.get(entrant.label, 0) + 1
        if count > 1:
            entrants[i] = Entrant(f"{entrant.label} ({count})", entrant.agents)


def render_policies(analysis: PoliciesAnalysis) -> str:
    """Each policy's strategies and exploitability, then the cross-play table."""
    lines = [f"{analysis.game}, {analysis.rounds} rounds"]
    for policy in analysis.policies:
        judged = policy.exploitability
        lines.append(f"{policy.label}: NashConv {judged.nash_conv:.3f}, exploitability "
                     f"{judged.exploitability:.3f}")
        for agent, strategy in policy.strategies.items():
            value, best = judged.values[agent], judged.best_responses[agent]
            lines.append(f"  {agent}: value {value:.3f}, a best response to the other gets "
                         f"{best:.3f}; {strategy.decisions} decisions")
            if agent in policy.descriptions:
                lines.append(f"    in words: {policy.descriptions[agent]}")
            for state, count in strategy.counts.items():
                mix = ", ".join(f"{a} {p:.2f}" for a, p in strategy.strategy[state].items())
                lines.append(f"    {state} ({count}): {mix}")
    if analysis.cross_play is not None:
        lines.append(_cross_play_table(analysis.cross_play))
    return "\n".join(lines)


def _cross_play_table(played: CrossPlay) -> str:
    width = max(map(len, played.entrants))
    lines = [f"cross-play, {played.episodes} episodes per pairing (row as player_0: its "
             "return / the column's)"]
    for label, row in zip(played.entrants, played.returns, strict=True):
        cells = "  ".join(f"{mine:6.2f}/{theirs:<6.2f}" for mine, theirs in row)
        lines.append(f"  {label:<{width}}  {cells}")
    return "\n".join(lines)


def write_policies(analysis: PoliciesAnalysis, out: Path) -> list[Path]:
    """`policies.json`, and with cross-play its heatmap, into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT_FILE
    report.write_text(json.dumps(analysis.model_dump(mode="json"), indent=2) + "\n")
    if analysis.cross_play is None:
        return [report]
    heatmap = out / HEATMAP_FILE
    cross_play_heatmap(analysis.cross_play, heatmap)
    return [report, heatmap]


def cross_play_heatmap(played: CrossPlay, path: Path) -> None:
    """Two panels: the row entrant's mean return (as player_0) and the column's (player_1)."""
    returns = np.asarray(played.returns)
    size = len(played.entrants)
    figure = Figure(figsize=(4.5 + 1.1 * size, 1.8 + 0.5 * size))
    FigureCanvasAgg(figure)
    low, high = float(returns.min()), float(returns.max())
    for panel, title in enumerate(("row's return (player_0)", "column's return (player_1)")):
        axes = figure.add_subplot(1, 2, panel + 1)
        image = axes.imshow(returns[..., panel], vmin=low, vmax=high, cmap="viridis")
        for (i, j), value in np.ndenumerate(returns[..., panel]):
            axes.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="w")
        axes.set_xticks(range(size), played.entrants, rotation=60, ha="right")
        axes.set_yticks(range(size), played.entrants if panel == 0 else [])
        axes.set_xlabel("column entrant (player_1)")
        axes.set_title(title)
    axes.figure.colorbar(image, ax=figure.axes, label="mean return per episode")
    figure.savefig(path, dpi=110, bbox_inches="tight")
