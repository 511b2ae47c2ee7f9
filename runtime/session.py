"""One run of a scenario: bus, agents, recorder, live view and runner, wired together."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agents.base import Agent, AgentContext
from agents.plugins import build_agent
from protocols import SchemaRegistry
from runtime.bus import Bus
from runtime.console import ConversationView
from runtime.envs import make_env
from runtime.host import AgentHost
from runtime.local_bus import LocalBus
from runtime.recorder import record
from runtime.runner import EpisodeResult, Runner
from runtime.scenario import Scenario

log = structlog.get_logger()


def open_bus(url: str, run: str, registry: SchemaRegistry, presence: str | None = None) -> Bus:
    """`memory` for the in-process bus, `mqtt://` or `mqtts://` for a broker."""
    if url == "memory":
        return LocalBus(run, registry)
    if url.startswith(("mqtt://", "mqtts://")):
        from runtime.mqtt_bus import MqttBus

        bus: Bus = MqttBus(run, url, registry, presence=presence)
        return bus
    raise ValueError(f"--bus {url!r}: use memory or mqtt://HOST:PORT")


def agent_seed(seed: int, name: str) -> int:
    """A per-agent seed that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def build_agents(scenario: Scenario, names: list[str], registry: SchemaRegistry, seed: int,
                 adapters_dir: str | None = None) -> list[Agent]:
    """Build the named agents of a scenario."""
    return [
        build_agent(scenario.agents[name].type, AgentContext(
            name=name, routes=scenario.routes_of(name), registry=registry,
            options=scenario.agents[name].options, seed=agent_seed(seed, name),
            model=scenario.model, adapters_dir=adapters_dir))
        for name in names
    ]


@dataclass
class RunSettings:
    """What `parley run` was asked for."""

    episodes: int
    seed: int
    bus: str = "memory"
    run_id: str | None = None
    record: Path | None = None
    adapters: str | None = None
    live: bool = True


async def _with_stream(bus: Bus, consume: Any) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """Start a task that consumes every envelope of the run; returns once it is subscribed."""
    ready = asyncio.Event()

    async def task() -> Any:
        async with bus.subscribe(None) as stream:
            ready.set()
            return await consume(stream)

    started = asyncio.create_task(task())
    await ready.wait()
    return started, ready


async def _wind_down(serving: list[asyncio.Task[None]], side: list[asyncio.Task[Any]],
                     grace_s: float = 10.0) -> None:
    """Let agents and recorders finish after the runner's stop; cancel agents still thinking.

    An agent busy with a late (already defaulted) action would otherwise hold the run open.
    """
    _, pending = await asyncio.wait([*serving, *side], timeout=grace_s)
    for task in pending:
        log.warning("task_cancelled_at_end", task=task.get_name())
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def episodes_summary(scenario: Scenario, results: list[EpisodeResult],
                     wall_s: float) -> dict[str, Any]:
    """What the episodes came to: mean returns, success rate, steps, each episode's."""
    names = list(scenario.agents)
    successes = [r.success for r in results if r.success is not None]
    return {
        "scenario": scenario.name,
        "episodes": len(results),
        "returns": {a: statistics.fmean(r.returns.get(a, 0.0) for r in results) for a in names},
        "success_rate": statistics.fmean(successes) if successes else None,
        "steps": sum(r.steps for r in results),
        "wall_s": round(wall_s, 3),
        "per_episode": [
            {"returns": r.returns, "success": r.success, "steps": r.steps} for r in results
        ],
    }


def summarise(scenario: Scenario, results: list[EpisodeResult], bus: Bus, runner: Runner,
              agents: list[Agent], wall_s: float) -> dict[str, Any]:
    """The run summary that `--summary` writes."""
    summary = episodes_summary(scenario, results, wall_s)
    summary["messages"] = bus.stats.as_dict()
    summary["incidents"] = {"late": runner.incidents.late, "failed": runner.incidents.failed,
                            "illegal": runner.incidents.illegal}
    llm = [a.llm_stats.as_dict() for a in agents if hasattr(a, "llm_stats")]
    if llm:
        summary["llm"] = {key: sum(s[key] for s in llm) for key in llm[0]}
    return summary


async def run_scenario(scenario: Scenario, settings: RunSettings) -> dict[str, Any]:
    """Run a scenario's episodes and return the summary."""
    started = time.perf_counter()
    registry = scenario.registry()
    run_id = settings.run_id or scenario.name
    structlog.contextvars.bind_contextvars(run=run_id)
    env = make_env(scenario.env)
    unknown = set(scenario.agents) ^ set(env.possible_agents)
    if unknown:
        raise ValueError(f"agents in the scenario and the env differ: {', '.join(sorted(unknown))}"
                         f" (env agents: {', '.join(env.possible_agents)})")
    local = [n for n, spec in scenario.agents.items() if not spec.remote]
    remote = [n for n, spec in scenario.agents.items() if spec.remote]
    agents = build_agents(scenario, local, registry, settings.seed, settings.adapters)
    async with open_bus(settings.bus, run_id, registry) as bus:
        side: list[asyncio.Task[Any]] = []
        if settings.record is not None:
            path = settings.record
            side.append((await _with_stream(bus, lambda s: record(s, path)))[0])
        if settings.live:
            side.append((await _with_stream(bus, ConversationView().follow))[0])
        hosts = [AgentHost(agent, bus, scenario.allows) for agent in agents]
        readiness = [asyncio.Event() for _ in hosts]
        serving = [asyncio.create_task(h.serve(r), name=f"agent:{h.name}")
                   for h, r in zip(hosts, readiness, strict=True)]
        await asyncio.gather(*(r.wait() for r in readiness))
        runner = Runner(env, bus, scenario.runtime, seed=settings.seed)
        results = await runner.run(settings.episodes, remote=remote)
        await _wind_down(serving, side)
    return summarise(scenario, results, bus, runner, agents, time.perf_counter() - started)


async def serve_agent(scenario: Scenario, name: str, bus_url: str, run_id: str | None,
                      seed: int, adapters: str | None = None) -> None:
    """Run one agent of a scenario in this process until the runner says stop."""
    if name not in scenario.agents:
        raise ValueError(f"--agent {name!r}: the scenario has {', '.join(scenario.agents)}")
    registry = scenario.registry()
    (agent,) = build_agents(scenario, [name], registry, seed, adapters)
    structlog.contextvars.bind_contextvars(run=run_id or scenario.name, agent=name)
    async with open_bus(bus_url, run_id or scenario.name, registry, presence=name) as bus:
        await AgentHost(agent, bus, scenario.allows).serve()
