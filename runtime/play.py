"""The one episode path: `parley run`, `parley agent`, evaluation and training rollouts.

A play hosts the scenario's local agents on a bus and, unless it only serves
agents for a runner elsewhere (`parley agent`), runs the episodes. With
`concurrency` above 1 the episodes are split into contiguous blocks, each played
by a slot of its own (a bus with its own run id, a Runner, an env, one instance
of every agent); model-driven agents of all slots share one InferenceEngine, so
their calls batch together. Taps see every envelope of every slot: the live
view, the recording, and the list a trainer keeps.

Determinism: episode `i` resets its env with seed `seed + i`; the agents of the
slot that starts at episode `i` are seeded from `seed + i`; per-request sampler
seeds come from the agents' own RNGs, so the outcome does not depend on how the
engine happened to batch.

On a broker locked down by `parley broker-config`, `credentials` give each process its
logins: the runner's bus (and the taps on it) logs in as `runner`, and every agent it
hosts gets a bus of its own with its own login, so the ACL can hold each to its name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import structlog

from agents.base import Agent, AgentContext, ModelUsage, UsesModel
from agents.plugins import build_agent
from protocols import RUNNER, SchemaRegistry
from runtime.bus import Bus, BusStats
from runtime.envs import make_env
from runtime.host import AgentHost, is_stop
from runtime.local_bus import LocalBus
from runtime.play_settings import PlaySettings, Tap, check_settings
from runtime.runner import Runner
from runtime.scenario import Scenario
from runtime.summary import EpisodeResult, Incidents, RunSummary

log = structlog.get_logger()


@dataclass
class _Slot:
    """One block of episodes on a bus of its own, and what it came to."""

    run_id: str
    first: int
    count: int
    results: list[EpisodeResult] = field(default_factory=list)
    messages: BusStats = field(default_factory=BusStats)
    incidents: Incidents = field(default_factory=Incidents)
    agents: list[Agent] = field(default_factory=list)


def open_bus(url: str, run: str, registry: SchemaRegistry, presence: str | None = None, *,
             login: str | None = None, require_auth: bool = False) -> Bus:
    """`memory` for the in-process bus, `mqtt://` or `mqtts://` for a broker.

    `login`, a URL, gives the user name and password (the broker is `url`'s);
    `require_auth` refuses to connect to a broker without a login.
    """
    if url == "memory":
        return LocalBus(run, registry)
    if url.startswith(("mqtt://", "mqtts://")):
        from runtime.mqtt_address import BrokerAddress
        from runtime.mqtt_bus import MqttBus

        user = BrokerAddress.parse(login) if login else None
        bus: Bus = MqttBus(run, url, registry, presence=presence, require_auth=require_auth,
                           username=user.username if user else None,
                           password=user.password if user else None)
        return bus
    raise ValueError(f"--bus {url!r}: use memory or mqtt://HOST:PORT")


def agent_seed(seed: int, name: str) -> int:
    """A per-agent seed that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def build_agents(scenario: Scenario, names: Sequence[str], registry: SchemaRegistry, seed: int,
                 settings: PlaySettings) -> list[Agent]:
    """The named agents of a scenario, each built by the plug-in registry from its context."""
    return [
        build_agent(scenario.agents[name].type, AgentContext(
            name=name, routes=scenario.routes_of(name), registry=registry,
            options=scenario.agents[name].options, seed=agent_seed(seed, name),
            model=scenario.model, adapters_dir=settings.adapters, engine=settings.engine))
        for name in names
    ]


def episode_blocks(episodes: int, concurrency: int) -> list[tuple[int, int]]:
    """(first episode, count) of each slot: contiguous blocks, as even as possible."""
    slots = max(1, min(episodes, concurrency))
    base, extra = divmod(episodes, slots)
    blocks, first = [], 0
    for slot in range(slots):
        count = base + (1 if slot < extra else 0)
        blocks.append((first, count))
        first += count
    return blocks


async def play(scenario: Scenario, settings: PlaySettings) -> RunSummary:
    """Play a scenario's episodes (or serve one agent) and return the run's summary.

    Raises:
        ValueError: the scenario's agents are not the env's, a settings value is out of
            range, or remote agents are asked to play several episodes at once.
    """
    started = time.perf_counter()
    check_settings(scenario, settings)
    if scenario.runtime.require_auth:
        settings = dataclasses.replace(settings, require_auth=True)
    run_id = settings.run_id or scenario.name
    structlog.contextvars.bind_contextvars(run=run_id)
    blocks = episode_blocks(settings.episodes, settings.concurrency)
    slots = [_Slot(run_id if len(blocks) == 1 else f"{run_id}-{n}", first, count)
             for n, (first, count) in enumerate(blocks)
             if settings.blocks is None or n in settings.blocks]
    registry = scenario.registry()
    await asyncio.gather(*(_play_slot(scenario, registry, settings, slot) for slot in slots))
    usage = [a.model_usage for slot in slots for a in slot.agents if isinstance(a, UsesModel)]
    return RunSummary.of(
        scenario.name, list(scenario.agents), [r for s in slots for r in s.results],
        wall_s=time.perf_counter() - started,
        incidents=Incidents.total([s.incidents for s in slots]),
        messages=BusStats.total([s.messages for s in slots]),
        llm=ModelUsage.total(usage) if usage else None)


async def _play_slot(scenario: Scenario, registry: SchemaRegistry, settings: PlaySettings,
                     slot: _Slot) -> None:
    """Host the slot's agents on a bus of its own and, unless serving only, run its episodes."""
    served = settings.serve_only
    names = [served] if served else [n for n, s in scenario.agents.items() if not s.remote]
    slot.agents = build_agents(scenario, names, registry, settings.seed + slot.first, settings)
    async with AsyncExitStack() as stack:
        bus, agent_buses = await _open_buses(stack, settings, slot.run_id, registry, names)
        tapping = [await _tap(bus, settings.taps)] if settings.taps and not served else []
        serving = await _serve(agent_buses, slot.agents, scenario)
        if served:
            await asyncio.gather(*serving)
        else:
            runner = Runner(make_env(scenario.env), bus, scenario.runtime, seed=settings.seed)
            remote = [n for n, s in scenario.agents.items() if s.remote]
            slot.results = await runner.run(slot.count, remote, first=slot.first)
            slot.incidents = runner.incidents
            await _wind_down(serving, tapping, settings.timeout_grace_s)
        distinct = [bus, *(b for b in agent_buses if b is not bus)]
        slot.messages = BusStats.total([b.stats for b in distinct])


async def _open_buses(stack: AsyncExitStack, settings: PlaySettings, run: str,
                      registry: SchemaRegistry, names: Sequence[str]) -> tuple[Bus, list[Bus]]:
    """The runner's bus (or the served agent's), and the bus of each agent `names` lists.

    The runner's bus announces `runner`: after a broker restart its hello makes agent
    hosts answer with theirs, in case they said hello before it had resubscribed.
    With credentials each hosted agent logs in as itself on a bus of its own;
    otherwise they all share the one bus.
    """
    logins = settings.credentials or {}
    owner = settings.serve_only or RUNNER

    async def opened(name: str, presence: str | None) -> Bus:
        bus = open_bus(settings.bus, run, registry, presence, login=logins.get(name),
                       require_auth=settings.require_auth)
        return await stack.enter_async_context(bus)

    main = await opened(owner, owner)
    if settings.serve_only or not logins:
        return main, [main] * len(names)
    return main, [await opened(name, None) for name in names]


async def _serve(buses: Sequence[Bus], agents: Sequence[Agent], scenario: Scenario
                 ) -> list[asyncio.Task[None]]:
    """Start a host per agent, each on its bus; returns once every one has said hello."""
    hosts = [AgentHost(agent, bus, scenario.allows)
             for agent, bus in zip(agents, buses, strict=True)]
    readiness = [asyncio.Event() for _ in hosts]
    serving = [asyncio.create_task(h.serve(r), name=f"agent:{h.name}")
               for h, r in zip(hosts, readiness, strict=True)]
    await asyncio.gather(*(r.wait() for r in readiness))
    return serving


async def _tap(bus: Bus, taps: Sequence[Tap]) -> asyncio.Task[None]:
    """A task that shows every envelope of the bus to `taps` until the runner's stop."""
    subscribed = asyncio.Event()

    async def follow() -> None:
        async with bus.subscribe(None) as stream:
            subscribed.set()
            async for envelope in stream:
                for tap in taps:
                    tap(envelope)
                if is_stop(envelope):
                    return

    task = asyncio.create_task(follow(), name="taps")
    await subscribed.wait()
    return task


async def _wind_down(serving: list[asyncio.Task[None]], tapping: list[asyncio.Task[None]],
                     grace_s: float) -> None:
    """Let agents and taps finish after the runner's stop; cancel agents still thinking.

    An agent busy with a late (already defaulted) action would otherwise hold the run open.
    """
    _, pending = await asyncio.wait([*serving, *tapping], timeout=grace_s)
    for task in pending:
        log.warning("task_cancelled_at_end", task=task.get_name())
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
