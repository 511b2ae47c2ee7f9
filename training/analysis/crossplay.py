"""Cross-play of an iterated matrix game: every entrant against every other, played for real.

Entrants are the scenario's agents as written, each trained population (a folder of
adapters: a seed, a run) and the scripted baselines: always each action, tit-for-tat,
uniform random and the stage game's best-welfare equilibrium played every round (for a
prisoner's dilemma, always defect: the finitely repeated game's only subgame-perfect
equilibrium). The row entrant plays `player_0`, the column entrant `player_1`, on the
one episode path, messages and all; the diagonal is each entrant's self-play. An
entrant's empirical strategy is counted over all its games (as player_0 in its row, as
player_1 in its column): self-play alone never shows what tit-for-tat does after a
defection, and a best response would exploit the guess.

Every population's adapters load into the one engine under a prefix of their own
(`p0_player_0`, ...), so trained seeds meet without a model per seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from protocols import Envelope
from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.scenario import AgentSpec, Scenario
from training.analysis.game import GameAnalysis

if TYPE_CHECKING:
    from agents.llm.engine import InferenceEngine


@dataclass(frozen=True)
class Entrant:
    """A way to fill each role of the game: one agent spec per player."""

    label: str
    agents: dict[str, AgentSpec]


def baselines(game: GameAnalysis) -> list[Entrant]:
    """always-<action> for each action, tit-for-tat, uniform, the equilibrium (see above)."""
    players, names = game.players, game.actions[0]

    def same(options: dict[str, object]) -> dict[str, AgentSpec]:
        return {p: AgentSpec.model_validate({"type": "strategy", "options": options})
                for p in players}

    entrants = [Entrant(f"always {name}", same({"strategy": "always", "action": i}))
                for i, name in enumerate(names)]
    entrants += [Entrant("tit-for-tat", same({"strategy": "tit_for_tat"})),
                 Entrant("uniform", same({"strategy": "mixed"}))]
    if game.equilibria:
        best = max(game.equilibria, key=lambda eq: eq.welfare)
        entrants.append(Entrant("equilibrium", {
            p: AgentSpec.model_validate({"type": "strategy", "options": {
                "strategy": "mixed", "probabilities": list(best.strategies[p].values())}})
            for p in players}))
    return entrants


def as_written(scenario: Scenario) -> Entrant:
    """The scenario's own agents (untrained, if they are LLM agents)."""
    llm = any(spec.type == "llm" for spec in scenario.agents.values())
    return Entrant("untrained" if llm else "as written", dict(scenario.agents))


def population(scenario: Scenario, label: str, prefix: str) -> Entrant:
    """The scenario's agents playing the adapters loaded under `prefix` (LLM agents only)."""
    agents = {}
    for name, spec in scenario.agents.items():
        if spec.type == "llm":
            options = {**spec.options, "adapter": prefix + name}
            spec = spec.model_copy(update={"options": options})
        agents[name] = spec
    return Entrant(label, agents)


def population_label(folder: Path) -> str:
    """`runs/ipd_s0/adapters` -> `ipd_s0`: the run folder names the population."""
    return folder.parent.name if folder.name == "adapters" else folder.name


class CrossPlay(BaseModel):
    """Mean returns of every pairing: `returns[row][column]` = [player_0's, player_1's]."""

    entrants: list[str]
    episodes: int
    returns: list[list[list[float]]]
    success: list[list[float | None]] = Field(description="Share of successful episodes.")


async def cross_play(scenario: Scenario, entrants: Sequence[Entrant], episodes: int, seed: int,
                     concurrency: int, engine: InferenceEngine | None,
                     advance: Callable[[str], None] = lambda pairing: None,
                     ) -> tuple[CrossPlay, dict[str, dict[str, list[Envelope]]]]:
    """Play every pairing; the result, and per entrant and role the envelopes of its games.

    `advance` is told each pairing played (`row vs column`), for a progress bar.
    """
    first, second = list(scenario.agents)
    returns: list[list[list[float]]] = []
    success: list[list[float | None]] = []
    games: dict[str, dict[str, list[Envelope]]] = {e.label: {first: [], second: []}
                                                   for e in entrants}
    for i, row in enumerate(entrants):
        returns.append([])
        success.append([])
        for j, column in enumerate(entrants):
            kept: list[Envelope] = []
            pairing = scenario.model_copy(update={"agents": {
                first: row.agents[first], second: column.agents[second]}})
            summary = await play(pairing, PlaySettings(
                episodes=episodes, seed=seed, concurrency=concurrency, engine=engine,
                run_id=f"{scenario.name}-crossplay-{i}-{j}", taps=[kept.append]))
            returns[-1].append([summary.returns[first], summary.returns[second]])
            success[-1].append(summary.success_rate)
            games[row.label][first] += kept
            games[column.label][second] += kept
            advance(f"{row.label} vs {column.label}")
    return (CrossPlay(entrants=[e.label for e in entrants], episodes=episodes,
                      returns=returns, success=success), games)
