"""Where a training iteration's episodes are played when not all in this process.

`training.workers: N` plays them on Ray workers (training/ray_rollout.py); agents marked
`remote: true` play in their own `parley agent --training` processes over a broker
(training/remote.py). Both take the learners' current adapters each iteration and give
back every envelope, so the trainer goes on as after a one-process rollout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from agents.llm.engine import run_on
from training.learners import Learners
from training.rollout import Rollout, collect_rollout
from training.train_scenario import TrainScenario


class RolloutSource(Protocol):
    """Where an iteration's episodes are played: this process, Ray workers, remote agents."""

    def collect(self, playing: TrainScenario, learners: Learners, episodes: int, seed: int,
                concurrency: int) -> Rollout:
        """Play an iteration's episodes with the learners' current adapters."""

    def close(self) -> None:
        """Release the workers, or tell the remote agents that training is over."""


class InProcess:
    """Every agent in this process, on the learners' engine (the default)."""

    def collect(self, playing: TrainScenario, learners: Learners, episodes: int, seed: int,
                concurrency: int) -> Rollout:
        """Play the episodes here, the model calls of all slots batched in one engine."""
        return run_on(learners.engine, collect_rollout(playing, learners.engine, episodes,
                                                       seed, concurrency))

    def close(self) -> None:
        """Nothing to release."""


def check_placement(scenario: TrainScenario, bus: str | None) -> None:
    """Refuse a scenario whose remote agents cannot be reached or played as asked."""
    remote = [name for name, spec in scenario.agents.items() if spec.remote]
    if not remote:
        return
    agents = ", ".join(remote)
    if bus is None or not bus.startswith(("mqtt://", "mqtts://")):
        raise ValueError(f"remote agents ({agents}) are trained over a broker: "
                         "parley train SCENARIO --bus mqtt://HOST:PORT")
    if scenario.training.workers:
        raise ValueError(f"remote agents ({agents}) play in their own processes, not on Ray "
                         "workers: leave training.workers unset")


@contextmanager
def rollout_source(scenario: TrainScenario, adapters: dict[str, str], out: Path,
                    address: str | None, bus: str | None, run_id: str | None
                    ) -> Iterator[RolloutSource]:
    """Ray workers (`training.workers`), remote agents, or this process; closed at the end."""
    source: RolloutSource
    if scenario.training.workers:
        from training.ray_rollout import RayRollouts

        source = RayRollouts(scenario, sorted(set(adapters.values())),
                             scenario.training.workers, address)
    elif any(spec.remote for spec in scenario.agents.values()):
        from training.remote import RemoteRollouts

        assert bus is not None  # check_placement
        source = RemoteRollouts(scenario, adapters, bus, out, run_id)
    else:
        source = InProcess()
    try:
        yield source
    finally:
        source.close()
