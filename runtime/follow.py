"""Remote agents in training: `parley agent --training` plays the rollouts a trainer orders.

The trainer (`parley train --bus mqtt://...`) and each remote agent process meet on the
session's run id (the scenario's name, or `--run-id` on both). Every iteration the
trainer sends each remote agent a Control `play` whose detail is a `PlayOrder`: the run
id and seed the one-process rollout would give the iteration, the scenario as trained,
and for a learning agent the folder its new adapters are in with their digest. The
agent checks the digest, loads those weights, answers `ready` with it (or `error`,
saying what is wrong), and serves the rollout with a fresh agent seeded as the
one-process rollout seeds it; then it waits for the next order. The trainer's `stop`
on the session ends it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from protocols import RUNNER, Control, seal
from protocols.messages import ControlCommand
from runtime.bus import Bus
from runtime.host import is_stop
from runtime.play import open_bus, play
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario

if TYPE_CHECKING:
    from agents.llm.engine import InferenceEngine

log = structlog.get_logger()


class PlayOrder(BaseModel):
    """What the trainer asks of a remote agent for one rollout (a Control `play`'s detail)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(description="The rollout's run id on the bus.")
    seed: int = Field(description="The rollout's seed: the agent is built from it.")
    episodes: int = Field(ge=1, description="The rollout's episodes.")
    concurrency: int = Field(ge=1, description="Its episodes at once, each on a run id of "
                             "its own (`runtime.play`): the agent serves them all.")
    scenario: dict[str, JsonValue] = Field(description="The scenario as trained, as JSON.")
    adapters: str | None = Field(
        default=None, description="A folder both can read holding the agent's new adapters; "
        "None for an agent that does not learn.")
    names: list[str] = Field(default_factory=list, description="The adapters to load.")
    digest: str = Field(default="", description="sha256 of those adapters' files.")


class OrderRefused(ValueError):
    """An order this process cannot carry out (its scenario, or its adapters)."""


async def follow(scenario: Scenario, agent: str, bus_url: str, run_id: str | None = None
                 ) -> int:
    """Serve each rollout the trainer orders until its stop; returns the rollouts played."""
    played = 0
    engine: InferenceEngine | None = None
    async with open_bus(bus_url, run_id or scenario.name, scenario.registry(),
                        presence=agent) as session, session.subscribe(agent) as stream:
        log.info("following_trainer", run=session.run, agent=agent)
        async for envelope in stream:
            if is_stop(envelope):
                break
            if envelope.sender != RUNNER or not isinstance(envelope.payload, Control):
                continue
            if envelope.payload.command == "hello":  # the trainer looks for its agents
                await tell(session, agent, RUNNER, "hello")
            elif envelope.payload.command == "play":
                try:
                    order, playing, engine = _accept(envelope.payload.detail, agent, engine)
                except OrderRefused as refusal:
                    log.error("order_refused", agent=agent, error=str(refusal))
                    await tell(session, agent, RUNNER, "error", str(refusal))
                    continue
                await tell(session, agent, RUNNER, "ready", order.digest)
                await play(playing, PlaySettings(
                    episodes=order.episodes, concurrency=order.concurrency, seed=order.seed,
                    bus=bus_url, run_id=order.run_id, engine=engine, serve_only=agent))
                played += 1
    log.info("trainer_done", agent=agent, rollouts=played)
    return played


def _accept(detail: str, agent: str, engine: InferenceEngine | None
            ) -> tuple[PlayOrder, Scenario, InferenceEngine | None]:
    """The order, its scenario and the engine with the order's adapters loaded."""
    try:
        order = PlayOrder.model_validate_json(detail)
        playing = Scenario.model_validate(order.scenario)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "order"
        raise OrderRefused(f"play order: {where}: {first['msg']}") from None
    if agent not in playing.agents:
        raise OrderRefused(f"play order: the scenario has no agent {agent!r}")
    if order.adapters is None:
        return order, playing, engine
    from agents.llm.adapters import AdapterDigestError, refresh_adapters
    from agents.llm.compute import on_torch_thread
    from agents.llm.engine import get_engine

    engine = engine or get_engine(playing.model)
    try:
        on_torch_thread(refresh_adapters, engine, Path(order.adapters), order.names,
                        order.digest)
    except (AdapterDigestError, FileNotFoundError) as error:
        raise OrderRefused(str(error)) from None
    log.info("handed_adapters_loaded", agent=agent, run=order.run_id, digest=order.digest)
    return order, playing, engine


async def tell(bus: Bus, sender: str, recipient: str, command: ControlCommand,
               detail: str = "") -> None:
    """Publish a Control on the session (`recipient` may be BROADCAST)."""
    await bus.publish(seal(Control(command=command, detail=detail), run=bus.run, episode=0,
                           step=0, sender=sender, recipient=recipient))

