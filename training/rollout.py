"""Rollouts: a scenario's episodes played on the one episode path, every envelope kept.

`collect_rollout` is `runtime.play` with the trainer's engine handed to every
model-driven agent (so their calls batch together and play the adapters being
trained) and a tap that keeps every envelope: all the trainer needs
(trajectory.py assembles them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from agents.llm.engine import InferenceEngine
from protocols import Envelope
from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario
from runtime.summary import EpisodeResult, RunSummary

log = structlog.get_logger()


@dataclass(frozen=True)
class Rollout:
    """What one rollout produced: every envelope of every slot, and the run summary.

    `envelopes` hold each slot's in publish order, slots interleaved as they ran.
    """

    envelopes: list[Envelope]
    summary: RunSummary

    @property
    def results(self) -> list[EpisodeResult]:
        """Each episode's outcome, in episode order."""
        return self.summary.per_episode

    @property
    def valid(self) -> int:
        """LLM messages that parsed and validated."""
        return self.summary.llm.valid if self.summary.llm else 0

    @property
    def rejected(self) -> int:
        """LLM messages dropped after their last re-ask (never on the bus)."""
        return self.summary.llm.rejected if self.summary.llm else 0

    @property
    def wall_s(self) -> float:
        """Seconds the rollout took."""
        return self.summary.wall_s


def rollout_run_id(scenario: str, seed: int) -> str:
    """The run id of a rollout: the scenario's name and the rollout's seed."""
    return f"{scenario}-{seed}"


async def collect_rollout(
    scenario: Scenario, engine: InferenceEngine, episodes: int, seed: int, concurrency: int,
    adapters_dir: str | None = None, blocks: Sequence[int] | None = None, bus: str = "memory",
) -> Rollout:
    """Play `episodes` episodes, `concurrency` at a time, keeping every envelope.

    `adapters_dir` hands LLM agents trained adapters to play, as `parley run --adapters`;
    `blocks` plays only those episode blocks (`runtime.play.PlaySettings.blocks`); `bus`
    is where the episodes are played: a broker when some agents are remote (their
    processes must be serving the run, see training/remote.py).

    Raises:
        ValueError: remote agents without a broker, or agents that are not the env's.
    """
    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    remote = [name for name, spec in scenario.agents.items() if spec.remote]
    if remote and bus == "memory":
        raise ValueError(f"remote agents ({', '.join(remote)}) play over a broker: "
                         "use --bus mqtt://HOST:PORT")
    kept: list[Envelope] = []
    # Agents may still be finishing a late call; give them as long as a step may take.
    grace = scenario.runtime.speak_timeout_s + scenario.runtime.action_timeout_s
    summary = await play(scenario, PlaySettings(
        episodes=episodes, seed=seed, concurrency=concurrency, bus=bus,
        run_id=rollout_run_id(scenario.name, seed),
        adapters=adapters_dir, engine=engine, taps=[kept.append], timeout_grace_s=grace,
        blocks=blocks, remote_slots=True))
    log.info("rollout_collected", episodes=episodes, envelopes=len(kept),
             wall_s=summary.wall_s)
    return Rollout(kept, summary)
