"""AgentHost: connects one Agent to the bus; the same code in-process and in `parley agent`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from pydantic import BaseModel

from agents.base import Agent, RewardObserver, Utterance
from protocols import (
    RUNNER,
    Action,
    Control,
    Envelope,
    EpisodeEnd,
    MalformedEnvelope,
    Observation,
    PolicyTrace,
    Reward,
    seal,
)
from runtime.bus import Bus, reject

log = structlog.get_logger()

Allows = Callable[[str, str, str], bool]


def is_stop(envelope: Envelope) -> bool:
    """The runner's last word: the run is over."""
    return (envelope.sender == RUNNER and isinstance(envelope.payload, Control)
            and envelope.payload.command == "stop")


class AgentHost:
    """Feeds an agent its observations and inbox, and publishes what it says and does."""

    def __init__(self, agent: Agent, bus: Bus, allows: Allows) -> None:
        self.agent, self.bus, self.allows = agent, bus, allows
        self.name = agent.name
        self.log = log.bind(run=bus.run, agent=self.name)
        self._observation: Observation | None = None
        self._inbox: list[Envelope] = []

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Handle envelopes until the runner says stop (or the bus closes)."""
        async with self.bus.subscribe(self.name) as stream:
            await self._send(RUNNER, 0, 0, Control(command="hello"))
            if ready is not None:
                ready.set()
            async for env in stream:
                if is_stop(env):
                    return
                await self._handle(env)

    async def _handle(self, env: Envelope) -> None:
        if env.kind == "say":
            self._receive(env)
            return
        if env.sender != RUNNER:
            return  # only the runner observes, rewards and coordinates
        match env.payload:
            case Observation() as observation:
                self._observation = observation
                await self._speak(env.episode, env.step)
            case Control(command="act"):
                await self._act(env.episode, env.step)
            case Control(command="hello"):
                await self._send(RUNNER, env.episode, env.step, Control(command="hello"))
            case Reward(reward=reward) if isinstance(self.agent, RewardObserver):
                self.agent.observe_reward(reward)
            case EpisodeEnd():
                self._observation, self._inbox = None, []

    def _receive(self, env: Envelope) -> None:
        if not self.allows(env.sender, env.recipient, env.schema_id):
            reject(self.bus.stats, f"say/{env.sender}/{env.recipient}",
                   MalformedEnvelope(f"protocol has no route {env.sender}->{env.recipient} "
                                     f"for {env.schema_id}"))
            return
        self._inbox.append(env)

    async def _speak(self, episode: int, step: int) -> None:
        assert self._observation is not None
        try:
            said = await self.agent.speak(self._observation, tuple(self._inbox))
        except Exception as error:  # an agent's bug must not stop the run
            self.log.error("agent_failed", phase="speak", episode=episode, step=step,
                           error=repr(error))
            said = []
        for utterance in said:
            await self._say(utterance, episode, step)
        await self._send(RUNNER, episode, step, Control(command="spoken"))

    async def _say(self, utterance: Utterance, episode: int, step: int) -> None:
        if not self.allows(self.name, utterance.recipient, utterance.schema_id):
            reject(self.bus.stats, f"say/{self.name}/{utterance.recipient}",
                   MalformedEnvelope(f"no route {self.name}->{utterance.recipient} for "
                                     f"{utterance.schema_id}"))
            return
        try:
            await self._send(utterance.recipient, episode, step, utterance.message,
                             schema_id=utterance.schema_id, trace=utterance.trace)
        except MalformedEnvelope as error:  # a message of another model than the schema's
            reject(self.bus.stats, f"say/{self.name}/{utterance.recipient}", error)

    async def _act(self, episode: int, step: int) -> None:
        if self._observation is None:
            return
        try:
            choice = await self.agent.act(self._observation, tuple(self._inbox))
        except Exception as error:  # reported; the runner plays the default action
            self.log.error("agent_failed", phase="act", episode=episode, step=step,
                           error=repr(error))
            await self._send(RUNNER, episode, step, Control(command="error", detail=repr(error)))
            return
        finally:
            self._inbox = []
        await self._send(RUNNER, episode, step, Action(action=choice.action), trace=choice.trace)

    async def _send(self, recipient: str, episode: int, step: int, message: BaseModel,
                    schema_id: str | None = None, trace: PolicyTrace | None = None) -> None:
        await self.bus.publish(seal(message, run=self.bus.run, episode=episode, step=step,
                                    sender=self.name, recipient=recipient, schema_id=schema_id,
                                    trace=trace))
