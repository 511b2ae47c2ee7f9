"""The Runner hosts the environment and drives each step over the bus.

One step: observations out; every acting agent speaks (messages travel on the bus);
then each is asked to act, with this step's messages in its inbox; the env steps;
rewards out. A late or crashed agent gets the default action, is reported, and the
run goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Literal

import structlog

from protocols import (
    BROADCAST,
    RUNNER,
    Action,
    Control,
    Envelope,
    EpisodeEnd,
    Observation,
    Reward,
    seal,
)
from runtime.bus import Bus
from runtime.envs import EnvHost
from runtime.scenario import RuntimeSpec
from runtime.summary import EpisodeResult, Incidents

log = structlog.get_logger()


class Runner:
    """Drives episodes of one environment over a bus."""

    def __init__(self, env: EnvHost, bus: Bus, runtime: RuntimeSpec, seed: int = 0) -> None:
        self.env, self.bus, self.runtime, self.seed = env, bus, runtime, seed
        self.incidents = Incidents()
        self._waiting: dict[tuple[str, str], asyncio.Future[Envelope]] = {}
        self._present: set[str] = set()
        self._presence = asyncio.Condition()
        self._offline: set[str] = set()
        self._where = (0, 0)

    async def run(self, episodes: int, remote: Iterable[str] = (), first: int = 0
                  ) -> list[EpisodeResult]:
        """Play episodes `first .. first + episodes - 1`; waits first for the remote agents."""
        async with self.bus.subscribe(RUNNER) as stream:
            reader = asyncio.create_task(self._read(stream))
            try:
                await self._await_agents(set(remote))
                return [await self.run_episode(e) for e in range(first, first + episodes)]
            finally:
                await self._publish(BROADCAST, Control(command="stop"))
                reader.cancel()

    async def _await_agents(self, remote: set[str]) -> None:
        if not remote:
            return
        await self._publish(BROADCAST, Control(command="hello"))
        log.info("waiting_for_agents", run=self.bus.run, agents=sorted(remote - self._present))
        async with self._presence:
            try:
                await asyncio.wait_for(
                    self._presence.wait_for(lambda: remote <= self._present),
                    self.runtime.remote_timeout_s)
            except TimeoutError:
                missing = sorted(remote - self._present)
                raise TimeoutError(f"remote agents never connected: {', '.join(missing)}") from None

    async def _read(self, stream: AsyncIterator[Envelope]) -> None:
        """Route agents' replies to whoever waits for them in the current step."""
        async for env in stream:
            match env.payload:
                case Control(command="hello" | "bye" | "offline" as presence):
                    await self._note_presence(env.sender, presence == "hello")
                # A crashed agent answers the act request with an error instead of an action.
                case Action() | Control(command="error"):
                    self._answer("action", env)
                case Control(command="spoken"):
                    self._answer("spoken", env)

    def _answer(self, what: Literal["action", "spoken"], env: Envelope) -> None:
        """Hand a reply to whoever waits for it in the current step; log stale actions."""
        future = self._waiting.get((what, env.sender))
        if future is not None and not future.done() and (env.episode, env.step) == self._where:
            future.set_result(env)
        elif what == "action":
            log.warning("stale_action", run=self.bus.run, agent=env.sender,
                        episode=env.episode, step=env.step)

    async def _note_presence(self, agent: str, here: bool) -> None:
        async with self._presence:
            (self._present.add if here else self._present.discard)(agent)
            (self._offline.discard if here else self._offline.add)(agent)
            self._presence.notify_all()
        if not here:
            log.warning("agent_offline", run=self.bus.run, agent=agent)

    async def run_episode(self, episode: int) -> EpisodeResult:
        """Play one episode and announce its end to all."""
        self.env.reset(seed=self.seed + episode)
        returns = dict.fromkeys(self.env.possible_agents, 0.0)
        step = 0
        while acting := self.env.acting():
            self._where = (episode, step)
            observations = {agent: self.env.observe(agent) for agent in acting}
            for agent, observation in observations.items():
                await self._publish(agent, observation)
            await self._gather("spoken", acting, self.runtime.speak_timeout_s)
            actions = await self._collect_actions(observations)
            for agent, reward in self.env.step(actions).items():
                returns[agent] = returns.get(agent, 0.0) + reward
                await self._publish(agent, Reward(reward=reward))
            step += 1
        result = EpisodeResult(episode=episode, returns=returns, steps=step,
                               success=self.env.success())
        await self._publish(BROADCAST, EpisodeEnd(returns=returns, steps=step,
                                                  success=result.success))
        log.info("episode_end", run=self.bus.run, episode=episode, steps=step, returns=returns,
                 success=result.success)
        return result

    async def _gather(self, what: Literal["action", "spoken"], agents: list[str],
                      timeout: float) -> dict[str, Envelope]:
        live = [a for a in agents if a not in self._offline]
        futures = {a: asyncio.get_running_loop().create_future() for a in live}
        for agent, future in futures.items():
            self._waiting[(what, agent)] = future
        if what == "action":
            for agent in live:
                await self._publish(agent, Control(command="act"))
        await asyncio.wait(futures.values(), timeout=timeout)
        for agent in futures:
            del self._waiting[(what, agent)]
        return {a: f.result() for a, f in futures.items() if f.done()}

    async def _collect_actions(self, observations: dict[str, Observation]) -> dict[str, int]:
        replies = await self._gather("action", list(observations), self.runtime.action_timeout_s)
        actions = {}
        for agent, observation in observations.items():
            reply = replies.get(agent)
            action = self._check(agent, observation, reply)
            actions[agent] = action
        return actions

    def _check(self, agent: str, observation: Observation, reply: Envelope | None) -> int:
        legal = observation.legal_actions
        default = self.runtime.default_action
        fallback = default if default is not None and default in legal else legal[0]
        episode, step = self._where
        bound = log.bind(run=self.bus.run, episode=episode, step=step, agent=agent)
        if reply is None:
            self.incidents.count(agent, "late")
            bound.warning("agent_late", default_action=fallback)
            return fallback
        if not isinstance(reply.payload, Action):  # the agent's Control "error"
            self.incidents.count(agent, "failed")
            detail = reply.payload.detail if isinstance(reply.payload, Control) else ""
            bound.warning("agent_failed_default_action", default_action=fallback, error=detail)
            return fallback
        action = reply.payload.action
        if action not in legal:
            self.incidents.count(agent, "illegal")
            bound.warning("illegal_action", action=action, default_action=fallback)
            return fallback
        return action

    async def _publish(self, recipient: str, message: Observation | Reward | Control | EpisodeEnd,
                       ) -> None:
        episode, step = self._where
        await self.bus.publish(seal(message, run=self.bus.run, episode=episode, step=step,
                                    sender=RUNNER, recipient=recipient))
