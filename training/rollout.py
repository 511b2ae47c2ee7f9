"""Rollouts: a scenario's episodes on in-process buses, every envelope kept.

A rollout runs `concurrency` slots at once. Each slot is a complete little run
of its own (a LocalBus with its own run id, a Runner, an env, one instance of
every agent) playing a contiguous block of the rollout's episodes; all LLM
agents of all slots share the one InferenceEngine, so their model calls batch
together. A recorder subscribed to everything keeps the envelopes, which are
all the trainer needs (trajectory.py assembles them).

Determinism: episode `i` of a rollout with seed `s` resets its env with seed
`s + i`, and the agents of the slot starting at episode `i` are seeded from
`s + i`; per-request sampler seeds come from the agents' own RNGs, so the
sampled tokens and actions do not depend on how the engine happened to batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from agents.base import Agent, AgentContext
from agents.llm.agent import LLMAgent
from agents.llm.engine import InferenceEngine
from agents.plugins import build_agent
from protocols import RUNNER, Envelope, SchemaRegistry
from runtime.envs import make_env
from runtime.host import AgentHost
from runtime.local_bus import LocalBus
from runtime.runner import EpisodeResult, Runner
from runtime.scenario import Scenario
from runtime.session import agent_seed

log = structlog.get_logger()


@dataclass(frozen=True)
class Rollout:
    """What one rollout produced.

    Attributes:
        envelopes: every envelope of every slot, slot after slot, each slot's in
            publish order.
        results: each episode's outcome, in episode order.
        valid: LLM messages that parsed and validated.
        rejected: LLM messages dropped after their last re-ask (never on the bus).
        wall_s: seconds the rollout took.
    """

    envelopes: list[Envelope]
    results: list[EpisodeResult]
    valid: int
    rejected: int
    wall_s: float


async def collect(
    scenario: Scenario, engine: InferenceEngine, episodes: int, seed: int, concurrency: int
) -> list[Envelope]:
    """Play `episodes` episodes, `concurrency` at a time, and return every envelope."""
    return (await collect_rollout(scenario, engine, episodes, seed, concurrency)).envelopes


async def collect_rollout(
    scenario: Scenario, engine: InferenceEngine, episodes: int, seed: int, concurrency: int,
    adapters_dir: str | None = None,
) -> Rollout:
    """Like `collect`, with the episode results and the LLM agents' message counters.

    `adapters_dir` hands LLM agents trained adapters to play, as `parley run --adapters`.

    Raises:
        ValueError: when the scenario has remote agents (training plays every agent
            in this process) or its agents are not the env's.
    """
    if episodes < 1 or concurrency < 1:
        raise ValueError("episodes and concurrency must be at least 1")
    remote = [name for name, spec in scenario.agents.items() if spec.remote]
    if remote:
        raise ValueError(f"training runs every agent in-process; remote: {', '.join(remote)}")
    started = time.perf_counter()
    registry = scenario.registry()
    blocks = _blocks(episodes, concurrency)
    slots = await asyncio.gather(
        *(_play_slot(scenario, engine, registry, seed, slot, first, count, adapters_dir)
          for slot, (first, count) in enumerate(blocks))
    )
    envelopes = [env for kept, _, _ in slots for env in kept]
    results = [result for _, played, _ in slots for result in played]
    agents = [agent for _, _, built in slots for agent in built]
    llm = [agent.llm_stats for agent in agents if isinstance(agent, LLMAgent)]
    wall_s = time.perf_counter() - started
    log.info("rollout_collected", episodes=episodes, envelopes=len(envelopes),
             wall_s=round(wall_s, 3))
    return Rollout(envelopes, results, sum(s.valid for s in llm), sum(s.rejected for s in llm),
                   wall_s)


def _blocks(episodes: int, concurrency: int) -> list[tuple[int, int]]:
    """(first episode, count) of each slot: contiguous blocks, as even as possible."""
    slots = min(episodes, concurrency)
    base, extra = divmod(episodes, slots)
    blocks, first = [], 0
    for slot in range(slots):
        count = base + (1 if slot < extra else 0)
        blocks.append((first, count))
        first += count
    return blocks


def build_slot_agents(
    scenario: Scenario, registry: SchemaRegistry, seed: int, engine: InferenceEngine,
    adapters_dir: str | None = None,
) -> list[Agent]:
    """One instance of every agent; LLM agents get the shared `engine`.

    Mirrors `runtime.session.build_agents`, which has no way to hand agents an
    engine (they would each fetch the process-wide one).
    """
    agents: list[Agent] = []
    for name, spec in scenario.agents.items():
        context = AgentContext(
            name=name, routes=scenario.routes_of(name), registry=registry,
            options=spec.options, seed=agent_seed(seed, name), model=scenario.model,
            adapters_dir=adapters_dir,
        )
        agent = (LLMAgent(context, engine=engine) if spec.type == "llm"
                 else build_agent(spec.type, context))
        agents.append(agent)
    return agents


async def _play_slot(
    scenario: Scenario, engine: InferenceEngine, registry: SchemaRegistry, seed: int,
    slot: int, first: int, count: int, adapters_dir: str | None,
) -> tuple[list[Envelope], list[EpisodeResult], list[Agent]]:
    """Play episodes `first .. first + count - 1` on a bus of their own."""
    env = make_env(scenario.env)
    unknown = set(scenario.agents) ^ set(env.possible_agents)
    if unknown:
        raise ValueError(f"agents in the scenario and the env differ: {', '.join(sorted(unknown))}")
    agents = build_slot_agents(scenario, registry, seed + first, engine, adapters_dir)
    kept: list[Envelope] = []
    async with LocalBus(f"{scenario.name}-{seed}-{slot}", registry) as bus:
        subscribed = asyncio.Event()
        recorder = asyncio.create_task(_keep(bus, kept, subscribed))
        await subscribed.wait()
        hosts = [AgentHost(agent, bus, scenario.allows) for agent in agents]
        readiness = [asyncio.Event() for _ in hosts]
        serving = [asyncio.create_task(h.serve(r)) for h, r in zip(hosts, readiness, strict=True)]
        await asyncio.gather(*(r.wait() for r in readiness))
        runner = Runner(env, bus, scenario.runtime, seed=seed + first)
        results = await runner.run(count)
        # Hosts may still be finishing a late call; give them as long as a step may take.
        grace = scenario.runtime.speak_timeout_s + scenario.runtime.action_timeout_s
        await asyncio.wait_for(asyncio.gather(*serving, recorder), timeout=grace)
    for result in results:
        result.episode += first  # the rollout's numbering, not the slot's
    return kept, results, agents


async def _keep(bus: LocalBus, kept: list[Envelope], subscribed: asyncio.Event) -> None:
    """Append every envelope of the bus to `kept` until the runner says stop."""
    async with bus.subscribe(None) as stream:
        subscribed.set()
        await _until_stop(stream, kept)


async def _until_stop(stream: AsyncIterator[Envelope], kept: list[Envelope]) -> None:
    async for envelope in stream:
        kept.append(envelope)
        if (envelope.kind == "control" and envelope.sender == RUNNER
                and envelope.payload.get("command") == "stop"):
            return
