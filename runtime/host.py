"""AgentHost: connects one Agent to the bus; the same code in-process and in `parley agent`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel

from agents.base import Agent, Utterance
from protocols import (
    RUNNER,
    Action,
    Control,
    Envelope,
    Kind,
    MalformedEnvelope,
    Observation,
    Reward,
    check_payload,
)
from runtime.bus import Bus, reject

log = structlog.get_logger()

BUILTIN_SCHEMAS: dict[str, str] = {
    "observation": "Observation@1", "action": "Action@1", "reward": "Reward@1",
    "episode_end": "EpisodeEnd@1", "control": "Control@1",
}

Allows = Callable[[str, str, str], bool]


def envelope(bus: Bus, sender: str, recipient: str, episode: int, step: int,
             message: BaseModel, **extra: Any) -> Envelope:
    """Wrap a built-in message kind in an envelope of this run."""
    kind: Kind = getattr(message, "kind")  # noqa: B009 - every built-in kind has one
    return Envelope(run=bus.run, episode=episode, step=step, sender=sender, recipient=recipient,
                    kind=kind, schema=BUILTIN_SCHEMAS[kind],
                    payload=message.model_dump(mode="json"), **extra)


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
                if not await self._handle(env):
                    return

    async def _handle(self, env: Envelope) -> bool:
        match env.kind:
            case "observation":
                self._observation = Observation.model_validate(env.payload)
                await self._speak(env.episode, env.step)
            case "say":
                self._receive(env)
            case "control":
                return await self._control(env)
            case "reward":
                observe = getattr(self.agent, "observe_reward", None)
                if observe is not None:
                    observe(Reward.model_validate(env.payload).reward)
            case "episode_end":
                self._observation, self._inbox = None, []
        return True

    async def _control(self, env: Envelope) -> bool:
        command = Control.model_validate(env.payload).command
        if command == "act" and env.sender == RUNNER:
            await self._act(env.episode, env.step)
        elif command == "hello" and env.sender == RUNNER:
            await self._send(RUNNER, env.episode, env.step, Control(command="hello"))
        return not (command == "stop" and env.sender == RUNNER)

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
        env = Envelope(run=self.bus.run, episode=episode, step=step, sender=self.name,
                       recipient=utterance.recipient, kind="say", schema=utterance.schema_id,
                       payload=utterance.payload, trace=utterance.trace)
        try:
            if not self.allows(self.name, utterance.recipient, utterance.schema_id):
                raise MalformedEnvelope(f"no route {self.name}->{utterance.recipient} for "
                                        f"{utterance.schema_id}")
            check_payload(env, self.bus.registry)
        except MalformedEnvelope as error:
            reject(self.bus.stats, f"say/{self.name}/{utterance.recipient}", error)
            return
        await self.bus.publish(env)

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
                    **extra: Any) -> None:
        await self.bus.publish(envelope(self.bus, self.name, recipient, episode, step, message,
                                        **extra))
