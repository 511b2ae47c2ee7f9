"""Training with agents that live in other processes (`parley train --bus mqtt://...`).

Agents marked `remote: true` run in `parley agent SCENARIO --agent NAME --bus URL
--training` processes (see `runtime.follow`). Every iteration the trainer writes the
remote learners' adapters to OUT/handed (replaced whole), meets its agents on the
session run id, orders each to play the iteration's rollout (run id, seed, the scenario
as trained, the adapters' folder and sha256) and waits for every `ready`; then it plays
the rollout over the broker as any run with remote agents, keeping every envelope. The
remote learners' decisions come back with their policy traces, so the update learns
from them as from local ones. A remote agent that does not learn (scripted, or another
framework's speaking the order protocol) gets orders without adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog

from agents.llm.adapters import adapters_digest, replace_adapters
from agents.llm.compute import on_torch_thread
from agents.llm.engine import run_on
from protocols import BROADCAST, RUNNER, Control, Envelope
from runtime.follow import PlayOrder, tell
from runtime.play import open_bus
from training.learners import Learners
from training.rollout import Rollout, collect_rollout, rollout_run_id
from training.train_scenario import TrainScenario

log = structlog.get_logger()

ASK_EVERY_S = 1.0
HANDED = "handed"
"""OUT/HANDED: the remote learners' adapters of the current iteration."""


class RemoteAgentError(ValueError):
    """A remote agent refused an order, or answered with the wrong adapters (bad input
    from the bus: `parley train` prints it on one line and exits 2)."""


class RemoteRollouts:
    """The trainer's side: orders on the session, rollouts over the broker."""

    def __init__(self, scenario: TrainScenario, adapters: dict[str, str], bus: str,
                 out: Path, run_id: str | None = None) -> None:
        self.remote = [name for name, spec in scenario.agents.items() if spec.remote]
        self.learning = {name: adapters[name] for name in self.remote if name in adapters}
        self.bus, self.session = bus, run_id or scenario.name
        self.folder = out / HANDED
        self.timeout_s = scenario.runtime.remote_timeout_s
        self.registry = scenario.registry()

    def collect(self, playing: TrainScenario, learners: Learners, episodes: int, seed: int,
                concurrency: int) -> Rollout:
        """Hand the remote learners their adapters, then play the iteration's episodes."""
        digest = self._hand(learners) if self.learning else ""
        orders = {name: self._order(playing, name, episodes, seed, concurrency, digest)
                  for name in self.remote}
        return run_on(learners.engine, self._collect(playing, learners, orders, episodes, seed,
                                                     concurrency))

    def close(self) -> None:
        """Tell the remote agents that training is over."""
        async def stop() -> None:
            async with open_bus(self.bus, self.session, self.registry) as session:
                await tell(session, RUNNER, BROADCAST, "stop")

        asyncio.run(stop())

    def _hand(self, learners: Learners) -> str:
        """Write the remote learners' adapters to OUT/handed, replaced whole; their digest."""
        names = sorted(set(self.learning.values()))
        on_torch_thread(replace_adapters, learners.model, self.folder, names)
        return adapters_digest(self.folder, names)

    def _order(self, playing: TrainScenario, name: str, episodes: int, seed: int,
               concurrency: int, digest: str) -> PlayOrder:
        adapter = self.learning.get(name)
        return PlayOrder(run_id=rollout_run_id(playing.name, seed), seed=seed, episodes=episodes,
                         concurrency=concurrency,
                         scenario=playing.model_dump(mode="json"),
                         adapters=str(self.folder.resolve()) if adapter else None,
                         names=[adapter] if adapter else [], digest=digest if adapter else "")

    async def _collect(self, playing: TrainScenario, learners: Learners,
                       orders: dict[str, PlayOrder], episodes: int, seed: int,
                       concurrency: int) -> Rollout:
        async with open_bus(self.bus, self.session, self.registry) as session, \
                session.subscribe(RUNNER) as stream:
            replies = _replies(stream)
            await self._answers(replies, "hello", set(orders),
                                ask=lambda: tell(session, RUNNER, BROADCAST, "hello"))
            for name, order in orders.items():
                await tell(session, RUNNER, name, "play", order.model_dump_json())
            ready = await self._answers(replies, "ready", set(orders))
            wrong = [name for name, order in orders.items() if ready[name] != order.digest]
            if wrong:
                raise RemoteAgentError(f"remote agents {', '.join(wrong)} loaded other adapters")
            return await collect_rollout(playing, learners.engine, episodes, seed, concurrency,
                                         bus=self.bus)

    async def _answers(self, replies: AsyncIterator[tuple[str, Control]], command: str,
                       agents: set[str], ask: Callable[[], Awaitable[None]] | None = None
                       ) -> dict[str, str]:
        """Each agent's detail of its first `command` (an `error` raises), in time.

        `ask` is repeated every second until all have answered: an agent process started
        after the question missed it.
        """
        answers: dict[str, str] = {}

        async def asking(ask: Callable[[], Awaitable[None]]) -> None:
            while True:
                await ask()
                await asyncio.sleep(ASK_EVERY_S)

        async def gather() -> None:
            async for sender, control in replies:
                if control.command == "error" and sender in agents:
                    raise RemoteAgentError(f"remote agent {sender}: {control.detail}")
                if control.command == command and sender in agents:
                    answers.setdefault(sender, control.detail)
                    if answers.keys() == agents:
                        return

        asked = asyncio.create_task(asking(ask)) if ask else None
        try:
            await asyncio.wait_for(gather(), self.timeout_s)
        except TimeoutError:
            missing = ", ".join(sorted(agents - answers.keys()))
            raise TimeoutError(
                f"remote agents never answered {command!r} on run {self.session!r}: {missing} "
                f"(start each: parley agent SCENARIO --agent NAME --bus {self.bus} --training)"
            ) from None
        finally:
            if asked:
                asked.cancel()
        return answers


async def _replies(stream: AsyncIterator[Envelope]) -> AsyncIterator[tuple[str, Control]]:
    """The session's Controls (to the runner, or a presence broadcast) as (sender, control)."""
    async for envelope in stream:
        if isinstance(envelope.payload, Control):
            yield envelope.sender, envelope.payload
