"""Hosting PettingZoo environments, Parallel and AEC, behind one small interface.

The Runner asks who acts now, what each of them observes (text for language agents,
numbers for the rest, the action mask), and steps the environment with their actions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import structlog
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pydantic import JsonValue

from protocols import ImportPathError, Observation, import_object
from runtime.scenario import EnvSpec
from runtime.scenario_yaml import failure

log = structlog.get_logger()


class EnvError(ValueError):
    """An environment the scenario names cannot be built or hosted.

    `field` is the path under `env` of the setting at fault (`("options",)`), if known.
    """

    def __init__(self, message: str, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field


@runtime_checkable
class NamesActions(Protocol):
    """An env that names its actions (built-in games do); others get `action <i>`."""

    def action_names(self, agent: str) -> list[str]: ...


@runtime_checkable
class WritesText(Protocol):
    """An env that renders an agent's observation as text for a language model."""

    def text_observation(self, agent: str) -> str: ...


@runtime_checkable
class TellsPrivate(Protocol):
    """An env that says what an agent alone knows (the hidden information to share)."""

    def private_information(self, agent: str) -> str | None: ...


class EnvHost(Protocol):
    """What the Runner needs from an environment."""

    possible_agents: list[str]

    def reset(self, seed: int | None) -> None: ...
    def acting(self) -> list[str]: ...
    def observe(self, agent: str) -> Observation: ...
    def step(self, actions: Mapping[str, int]) -> dict[str, float]: ...
    def success(self) -> bool | None: ...


def to_json(value: Any) -> JsonValue:
    """A numeric observation as JSON (floats rounded: the text is for people and models)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return round(value, 4)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _split_mask(raw: Any, info: Mapping[str, Any]) -> tuple[Any, list[bool] | None]:
    """PettingZoo puts action masks in the observation dict or in infos."""
    mask = info.get("action_mask")
    if isinstance(raw, dict) and "action_mask" in raw:
        mask = raw["action_mask"]
        raw = raw.get("observation", raw)
    return raw, None if mask is None else [bool(m) for m in np.asarray(mask).tolist()]


def generic_text(agent: str, numbers: JsonValue) -> str:
    """The text of an env that writes none: its numbers, as JSON."""
    return f"You are {agent}. Your observation: {numbers}"


class _Rendering:
    """Text and action names: the env's own when it has them, generic otherwise."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def action_names(self, agent: str) -> list[str]:
        if isinstance(self.env, NamesActions):
            return list(self.env.action_names(agent))
        space = self.env.action_space(agent)
        if not isinstance(space, spaces.Discrete):
            raise EnvError(f"agent {agent}: action space {space} is not Discrete")
        return [f"action {i}" for i in range(int(space.n))]

    def observation(self, agent: str, raw: Any, info: Mapping[str, Any]) -> Observation:
        data, mask = _split_mask(raw, info)
        numbers = to_json(data)
        if isinstance(self.env, WritesText):
            text = str(self.env.text_observation(agent))
        else:
            text = generic_text(agent, numbers)
        private = (self.env.private_information(agent)
                   if isinstance(self.env, TellsPrivate) else None)
        return Observation(text=text, data=numbers, action_names=self.action_names(agent),
                           action_mask=mask, private=private)


class ParallelHost:
    """Hosts a ParallelEnv: every live agent acts at every step."""

    def __init__(self, env: ParallelEnv[Any, Any, Any], max_steps: int) -> None:
        self.env, self.max_steps = env, max_steps
        self.possible_agents = list(env.possible_agents)
        self._render = _Rendering(env)
        self._obs: dict[str, Any] = {}
        self._infos: dict[str, Any] = {}
        self._steps = 0

    def reset(self, seed: int | None) -> None:
        self._obs, self._infos = self.env.reset(seed=seed)
        self._steps = 0

    def acting(self) -> list[str]:
        return [] if self._over() else list(self.env.agents)

    def observe(self, agent: str) -> Observation:
        return self._render.observation(agent, self._obs[agent], self._infos.get(agent, {}))

    def step(self, actions: Mapping[str, int]) -> dict[str, float]:
        self._obs, rewards, _, _, self._infos = self.env.step(dict(actions))
        self._steps += 1
        return {agent: float(r) for agent, r in rewards.items()}

    def _over(self) -> bool:
        return not self.env.agents or self._steps >= self.max_steps

    def success(self) -> bool | None:
        flags = [info["success"] for info in self._infos.values() if "success" in info]
        return all(flags) if flags else None


class AECHost:
    """Hosts an AECEnv: one agent acts at a time, in the env's turn order."""

    def __init__(self, env: AECEnv[Any, Any, Any], max_steps: int) -> None:
        self.env, self.max_steps = env, max_steps
        self.possible_agents = list(env.possible_agents)
        self._render = _Rendering(env)
        self._steps = 0

    def reset(self, seed: int | None) -> None:
        self.env.reset(seed=seed)
        self._steps = 0

    def _skip_finished(self, rewards: dict[str, float]) -> None:
        # AEC envs expect a None step from each agent that is done before it leaves.
        while self.env.agents:
            agent = self.env.agent_selection
            if not (self.env.terminations[agent] or self.env.truncations[agent]):
                return
            self.env.step(None)
            for name, r in self.env.rewards.items():
                rewards[name] = rewards.get(name, 0.0) + float(r)

    def acting(self) -> list[str]:
        if self._over():
            return []
        self._skip_finished({})
        return [self.env.agent_selection] if self.env.agents else []

    def observe(self, agent: str) -> Observation:
        return self._render.observation(agent, self.env.observe(agent), self.env.infos[agent])

    def step(self, actions: Mapping[str, int]) -> dict[str, float]:
        agent = self.env.agent_selection
        self.env.step(actions[agent])
        self._steps += 1
        rewards = {name: float(r) for name, r in self.env.rewards.items()}
        self._skip_finished(rewards)
        return rewards

    def _over(self) -> bool:
        return not self.env.agents or self._steps >= self.max_steps

    def success(self) -> bool | None:
        flags = [info["success"] for info in self.env.infos.values() if "success" in info]
        return all(flags) if flags else None


def _module_constructor(spec: EnvSpec, module_name: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the module is the user's: any failure to import is bad input
        log.debug("env_import_failed", module=module_name, exc_info=True)
        raise EnvError(f"cannot import environment module {module_name!r}: {failure(error)}",
                       ("pettingzoo",)) from None
    names = {"auto": ("parallel_env", "env"), "parallel": ("parallel_env",), "aec": ("env",)}
    found = [vars(module)[name] for name in names[spec.api] if name in vars(module)]
    if not found:
        raise EnvError(f"module {module_name!r} has no {' or '.join(names[spec.api])}()",
                       ("pettingzoo",))
    return found[0]  # type: ignore[no-any-return]


def _constructor(spec: EnvSpec) -> Callable[..., Any]:
    if spec.game is not None:
        from runtime.games import GAMES

        if spec.game not in GAMES:
            raise EnvError(f"unknown game {spec.game!r}; built-in games: {', '.join(GAMES)}",
                           ("game",))
        return GAMES[spec.game]
    assert spec.pettingzoo is not None
    if ":" not in spec.pettingzoo:
        return _module_constructor(spec, spec.pettingzoo)
    try:
        return import_object(spec.pettingzoo)  # type: ignore[no-any-return]
    except ImportPathError as error:
        raise EnvError(str(error), ("pettingzoo",)) from None
    except Exception as error:  # the module's own failure while it is imported
        log.debug("env_import_failed", module=spec.pettingzoo, exc_info=True)
        raise EnvError(f"cannot import {spec.pettingzoo!r}: {failure(error)}",
                       ("pettingzoo",)) from None


def make_env(spec: EnvSpec) -> EnvHost:
    """Build the scenario's environment and wrap it for the Runner; EnvError if it fails."""
    constructor = _constructor(spec)
    try:
        env = constructor(**spec.options)
    except Exception as error:
        # Third-party code given the scenario's options: whatever it raises (TypeError,
        # AssertionError, the ImportError of a missing extra) is bad input, not a crash.
        log.debug("env_build_failed", exc_info=True)
        at_fault = ("pettingzoo",) if isinstance(error, ImportError) else ("options",)
        raise EnvError(f"cannot build {spec.game or spec.pettingzoo}: {failure(error)}",
                       at_fault) from None
    if isinstance(env, ParallelEnv):
        return ParallelHost(env, spec.max_steps)
    if isinstance(env, AECEnv):
        return AECHost(env, spec.max_steps)
    raise EnvError(f"{type(env).__name__} is neither a PettingZoo ParallelEnv nor an AECEnv",
                   ("pettingzoo",) if spec.pettingzoo else ())


def agents_mismatch(scenario_agents: Iterable[str], env_agents: Sequence[str]) -> str | None:
    """Why a scenario's agents are not its env's (names on one side only), or None."""
    differ = set(scenario_agents) ^ set(env_agents)
    if not differ:
        return None
    return (f"agents in the scenario and the env differ: {', '.join(sorted(differ))} "
            f"(env agents: {', '.join(env_agents)})")


def check_env(spec: EnvSpec, seed: int) -> list[str]:
    """Build the env, reset it and render each acting agent's observation, as a run starts.

    Returns the env's possible agents; EnvError if any of it fails.
    """
    host = make_env(spec)
    try:
        host.reset(seed)
        for agent in host.acting():
            host.observe(agent)
    except EnvError:
        raise
    except Exception as error:  # as in make_env: the env's code running on the options
        log.debug("env_reset_failed", exc_info=True)
        raise EnvError(f"{spec.game or spec.pettingzoo} fails on reset: {failure(error)}",
                       ("options",)) from None
    return host.possible_agents
