"""Preflight: build what a run would build (env, local agents) before it starts.

Separate from `runtime.scenario` because it needs the env hosts, which read the
scenario's EnvSpec: here both are imported, and neither imports the other back.
"""

from __future__ import annotations

import structlog

from agents.base import AgentContext
from agents.plugins import AgentLoadError, agent_class, build_agent
from protocols import SchemaRegistry
from runtime.envs import EnvError, agents_mismatch, check_env
from runtime.scenario import Scenario
from runtime.scenario_yaml import ScenarioError, failure

log = structlog.get_logger()


def preflight(scenario: Scenario, adapters: str | None = None, serve: str | None = None) -> None:
    """Build what a run builds before it plays, and nothing more; ScenarioError if any fails.

    The env is built and reset once with the scenario's seed; the agents this process
    would host (the local ones, or only `serve` for `parley agent`; remote agents are
    built on their own host) are built from their type and options as `runtime.play`
    builds them. No language model is loaded: LLM agents load their engine on first use.
    `adapters`, if given, must hold each LLM agent's adapter (`--adapters`).
    """
    registry = scenario.registry()
    problems: list[str] = []
    try:
        env_agents = check_env(scenario.env, scenario.seed)
    except EnvError as error:
        problems.append(f"{scenario.where('env', *error.field)}: {error}")
    else:
        mismatch = agents_mismatch(scenario.agents, env_agents)
        if mismatch:
            problems.append(f"{scenario.where('agents')}: {mismatch}")
    hosted = [serve] if serve in scenario.agents else [
        name for name, spec in scenario.agents.items() if not spec.remote]
    problems += [problem for name in hosted
                 if (problem := _agent_problem(scenario, name, registry, adapters))]
    if problems:
        raise ScenarioError(problems)


def _agent_problem(scenario: Scenario, name: str, registry: SchemaRegistry,
                   adapters: str | None) -> str | None:
    """Why agent `name` cannot be built, or None.

    Agent classes are plug-in code: whatever their module raises on import, or their
    constructor on the scenario's options, is a problem of the scenario, not a crash
    (`--log-level debug` logs the traceback).
    """
    spec = scenario.agents[name]
    try:
        agent_class(spec.type)
    except AgentLoadError as error:
        return f"{scenario.where('agents', name, 'type')}: {error}"
    except Exception as error:
        log.debug("agent_import_failed", agent=name, exc_info=True)
        return f"{scenario.where('agents', name, 'type')}: cannot load {spec.type}: " \
            f"{failure(error)}"
    context = AgentContext(name=name, routes=scenario.routes_of(name), registry=registry,
                           options=spec.options, model=scenario.model, adapters_dir=adapters)
    try:
        build_agent(spec.type, context)
    except AgentLoadError as error:
        return f"{scenario.where('agents', name, 'options')}: {error}"
    except Exception as error:
        log.debug("agent_build_failed", agent=name, exc_info=True)
        return f"{scenario.where('agents', name)}: cannot build agent {name!r} ({spec.type}): " \
            f"{failure(error)}"
    return None
