"""The Runner hosts the environment and drives each step over the bus.

One step: observations out; every acting agent speaks (messages travel on the bus);
then each is asked to act, with this step's messages in its inbox; the env steps;
rewards out. A late, crashed or offline agent gets the default action, is counted
in `incidents` and logged, and the run goes on.

A reply counts only as the answer to a request of this step that went out, once,
before its deadline; anything else is logged (`reply_dropped`) and dropped. An agent
is offline from its last will or `bye` until it is heard from again, and also once
it answers neither request of a step (silent): offline agents are not waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass
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
from runtime.host import is_illegal
from runtime.scenario import RuntimeSpec
from runtime.summary import EpisodeResult, Incidents

log = structlog.get_logger()

Phase = Literal["action", "spoken"]


@dataclass
class _Request:
    """One request of a step to one agent: the one reply it accepts, and until when."""

    where: tuple[int, int]
    deadline: float
    reply: asyncio.Future[Envelope]
    sent: bool = False
    open: bool = True


class Runner:
    """Drives episodes of one environment over a bus."""

    def __init__(self, env: EnvHost, bus: Bus, runtime: RuntimeSpec, seed: int = 0) -> None:
        self.env, self.bus, self.runtime, self.seed = env, bus, runtime, seed
        self.incidents = Incidents()
        # The latest request per phase and agent, kept once closed to tell a late reply
        # from an unrequested one.
        self._requests: dict[tuple[Phase, str], _Request] = {}
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
        """Route agents' replies to the requests that wait for them; follow presence."""
        async for env in stream:
            match env.payload:
                case Control(command="bye" | "offline"):
                    await self._note_presence(env, here=False)
                    continue
                case Control(command="hello"):
                    await self._note_presence(env, here=True)
                # A crashed agent answers the act request with an error instead of an action.
                case Action() | Control(command="error"):
                    self._answer("action", env)
                case Control(command="spoken"):
                    self._answer("spoken", env)
            if env.sender in self._offline:  # any word from an offline agent: it is back
                await self._note_presence(env, here=True)

    def _answer(self, what: Phase, env: Envelope) -> None:
        """Accept `env` as the answer to its request, or log why not and drop it."""
        request = self._requests.get((what, env.sender))
        refusal = self._refusal(request, env)
        if request is not None and refusal is None:
            request.reply.set_result(env)
            return
        log.warning("reply_dropped", run=self.bus.run, agent=env.sender, what=what,
                    episode=env.episode, step=env.step, **(refusal or {}))

    @staticmethod
    def _refusal(request: _Request | None, env: Envelope) -> dict[str, object] | None:
        """Why `env` does not answer `request` (None: it does)."""
        if env.recipient != RUNNER:
            return {"reason": "not_to_runner"}
        if request is None or not request.sent or request.where != (env.episode, env.step):
            return {"reason": "unrequested"}
        if request.reply.done():
            return {"reason": "duplicate"}
        # Past the deadline even if the timer has not fired yet: a blocked event loop.
        overran = asyncio.get_running_loop().time() - request.deadline
        if overran > 0 or not request.open:
            return {"reason": "late", "overran_s": round(max(overran, 0.0), 3)}
        return None

    async def _note_presence(self, env: Envelope, here: bool) -> None:
        """Follow who is there: hello (or any word) brings an agent back, bye or will not."""
        agent = env.sender
        payload = env.payload
        why = (payload.detail or payload.command) if isinstance(payload, Control) else env.kind
        async with self._presence:
            came_back = here and agent in self._offline
            (self._present.add if here else self._present.discard)(agent)
            (self._offline.discard if here else self._offline.add)(agent)
            self._presence.notify_all()
        if came_back:
            self._bound(agent).info("agent_back", why=why)
        if here:
            return
        self._bound(agent).warning("agent_offline", why=why)
        # What this step waits for from it will not come: the news itself is the answer.
        phases: tuple[Phase, ...] = ("spoken", "action")
        for what in phases:
            request = self._requests.get((what, agent))
            if request is not None and request.open and not request.reply.done():
                request.reply.set_result(env)

    async def run_episode(self, episode: int) -> EpisodeResult:
        """Play one episode and announce its end to all."""
        self.env.reset(seed=self.seed + episode)
        returns = dict.fromkeys(self.env.possible_agents, 0.0)
        step = 0
        while acting := self.env.acting():
            self._where = (episode, step)
            actions = await self._play_step(acting)
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

    async def _play_step(self, acting: list[str]) -> dict[str, int]:
        """Observations out, speaking, then the actions (each checked) of one step."""
        observations = {agent: self.env.observe(agent) for agent in acting}
        # Offline agents still get the observation (a live but silent one answers, and so
        # comes back), but are not waited for.
        live = [agent for agent in acting if agent not in self._offline]
        spoken = await self._ask("spoken", observations, live, self.runtime.speak_timeout_s)
        self._count_speak_failures(spoken)
        # Only agents that were live when the observation went out can act on it.
        asked = {agent: Control(command="act") for agent in live if agent not in self._offline}
        replies = await self._ask("action", asked, asked, self.runtime.action_timeout_s)
        for agent in asked:
            if agent in spoken:
                continue
            if agent in replies:  # it acted, so it is live: its speaking overran
                self.incidents.count(agent, "late")
                self._bound(agent).warning("agent_speak_late",
                                           waited_s=self.runtime.speak_timeout_s)
            else:
                self._offline.add(agent)
                self._bound(agent).warning("agent_silent", waited_s=self.runtime.speak_timeout_s
                                           + self.runtime.action_timeout_s)
        return {agent: self._check(agent, observation, replies.get(agent), agent in asked)
                for agent, observation in observations.items()}

    async def _ask(self, what: Phase, messages: Mapping[str, Observation | Control],
                   wait_for: Collection[str], timeout: float) -> dict[str, Envelope]:
        """Send each agent its message, then wait for one `what` from each of `wait_for`.

        Returns the replies that came within `timeout`; with nobody to wait for (every
        acting agent offline) it returns at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Registered before anything goes out, so that no quick reply finds no request.
        requests = {agent: _Request(self._where, deadline, loop.create_future())
                    for agent in wait_for}
        for agent, request in requests.items():
            self._requests[(what, agent)] = request
        try:
            for agent, message in messages.items():
                if agent in requests:
                    requests[agent].sent = True
                await self._publish(agent, message)
            if requests:
                await asyncio.wait([r.reply for r in requests.values()],
                                   timeout=max(0.0, deadline - loop.time()))
        finally:
            for request in requests.values():
                request.open = False
        return {agent: r.reply.result() for agent, r in requests.items() if r.reply.done()}

    def _count_speak_failures(self, spoken: Mapping[str, Envelope]) -> None:
        """A host reports a failed `speak` in the detail of its `spoken`."""
        for agent, reply in spoken.items():
            match reply.payload:
                case Control(command="spoken", detail=detail) if detail:
                    self.incidents.count(agent, "failed")
                    self._bound(agent).warning("agent_speak_failed", error=detail)

    def _check(self, agent: str, observation: Observation, reply: Envelope | None,
               asked: bool) -> int:
        """The agent's action if it answered in time with a legal one, else the default."""
        legal = observation.legal_actions
        default = self.runtime.default_action
        fallback = default if default is not None and default in legal else legal[0]
        bound = self._bound(agent)
        match reply.payload if reply is not None else None:
            case _ if not asked:
                self.incidents.count(agent, "offline")
                bound.info("agent_offline_default_action", default_action=fallback)
            case None:
                self.incidents.count(agent, "late")
                bound.warning("agent_late", default_action=fallback)
            case Control(command="bye" | "offline"):
                self.incidents.count(agent, "offline")
                bound.info("agent_offline_default_action", default_action=fallback)
            case Control(command="error", detail=detail):
                self.incidents.count(agent, "illegal" if is_illegal(detail) else "failed")
                bound.warning("agent_failed_default_action", default_action=fallback,
                              error=detail)
            case Action(action=action) if action in legal:
                return action
            case Action(action=action):
                self.incidents.count(agent, "illegal")
                bound.warning("illegal_action", action=action, default_action=fallback)
        return fallback

    def _bound(self, agent: str) -> structlog.typing.FilteringBoundLogger:
        episode, step = self._where
        bound: structlog.typing.FilteringBoundLogger = log.bind(
            run=self.bus.run, episode=episode, step=step, agent=agent)
        return bound

    async def _publish(self, recipient: str, message: Observation | Reward | Control | EpisodeEnd,
                       ) -> None:
        episode, step = self._where
        await self.bus.publish(seal(message, run=self.bus.run, episode=episode, step=step,
                                    sender=RUNNER, recipient=recipient))
