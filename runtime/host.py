"""AgentHost: connects one Agent to the bus; the same code in-process and in `parley agent`.

The host is the guard around plug-in code: whatever an agent raises or returns, the
host answers the runner for every request (an action, or an error Control whose detail
says what went wrong) and keeps serving. It never lets an agent's return value reach
the bus unchecked.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel

from agents.base import Agent, Choice, RewardObserver, Utterance
from protocols import (
    RUNNER,
    Action,
    BuiltinMessage,
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
T = TypeVar("T")

BLOCKING_WARN_S = 0.1
"""Agent code that runs this long without awaiting holds up every agent and the runner
(asyncio's own slow-callback threshold); the host names it in a warning."""
ILLEGAL = "illegal action"
"""How the detail of an act's error Control starts when the choice cannot be an action."""


def is_stop(envelope: Envelope) -> bool:
    """The runner's last word: the run is over."""
    return (envelope.sender == RUNNER and isinstance(envelope.payload, Control)
            and envelope.payload.command == "stop")


def is_illegal(detail: str) -> bool:
    """True when an act's error detail says the agent chose an impossible action."""
    return detail.startswith(ILLEGAL)


class InvalidReturn(Exception):
    """An agent returned something its protocol does not allow."""


class IllegalAction(InvalidReturn):
    """An agent chose an int that cannot index an action (a negative one)."""


def _a(value: object) -> str:
    return f"a {type(value).__name__}"


def checked_choice(choice: object) -> Choice:
    """`choice` if it is a Choice of an action index (and a trace or None)."""
    if not isinstance(choice, Choice):
        raise InvalidReturn(f"act returned {_a(choice)}, not a Choice")
    action = choice.action
    if not isinstance(action, int) or isinstance(action, bool):
        raise InvalidReturn(f"act chose {_a(action)}, not an int")
    if action < 0:
        raise IllegalAction(f"{ILLEGAL} {action}: not an index of action_names")
    if choice.trace is not None and not isinstance(choice.trace, PolicyTrace):
        raise InvalidReturn(f"act returned a Choice whose trace is {_a(choice.trace)}")
    return choice


def checked_utterances(said: object) -> list[Utterance]:
    """`said` if it is a list (or tuple) of well-formed Utterances."""
    if not isinstance(said, list | tuple):
        raise InvalidReturn(f"speak returned {_a(said)}, not a list of Utterance")
    for utterance in said:
        if not isinstance(utterance, Utterance):
            raise InvalidReturn(f"speak returned a list holding {_a(utterance)}")
        if not (isinstance(utterance.recipient, str) and isinstance(utterance.schema_id, str)
                and isinstance(utterance.message, BaseModel)
                and isinstance(utterance.trace, PolicyTrace | None)):
            raise InvalidReturn(f"speak returned a malformed Utterance: {utterance!r}"[:200])
        if isinstance(utterance.message, BuiltinMessage):  # would travel as, say, an Action
            raise InvalidReturn(f"speak returned an Utterance carrying a runtime message, "
                                f"{type(utterance.message).__name__}")
    return list(said)


async def timed(call: Coroutine[Any, Any, T], on_slice: Callable[[float], None]) -> T:
    """Await `call` as its own task would, reporting how long each synchronous slice ran.

    Each `send` runs the agent's code up to its next await; the event loop can do
    nothing else meanwhile, so that duration is what everyone else waited for it.
    Futures it awaits are awaited here, and what they raise (a cancellation of this
    task too) is thrown back into it, as asyncio's Task does.
    """
    error: BaseException | None = None
    while True:
        started = time.perf_counter()
        try:
            waiting = call.send(None) if error is None else call.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            on_slice(time.perf_counter() - started)
        error = None
        try:
            if waiting is None:  # a bare yield: `asyncio.sleep(0)`
                await asyncio.sleep(0)
            elif asyncio.isfuture(waiting):
                # The agent's `await` marked it as blocking; this task takes the wait over
                # (the future protocol's own handshake, as Task.__step does).
                waiting._asyncio_future_blocking = False
                await waiting
            else:
                raise RuntimeError(f"agent code yielded {waiting!r}, not an asyncio future")
        except BaseException as raised:  # handed on to the agent's code, as a Task would
            error = raised


class AgentHost:
    """Feeds an agent its observations and inbox, and publishes what it says and does."""

    def __init__(self, agent: Agent, bus: Bus, allows: Allows) -> None:
        self.agent, self.bus, self.allows = agent, bus, allows
        self.name = agent.name
        self.log = log.bind(run=bus.run, agent=self.name)
        self._observation: Observation | None = None
        self._observed_at = (-1, -1)
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
                self._observation, self._observed_at = observation, (env.episode, env.step)
                await self._speak(env.episode, env.step)
            case Control(command="act"):
                await self._act(env.episode, env.step)
            case Control(command="hello"):
                await self._send(RUNNER, env.episode, env.step, Control(command="hello"))
            case Reward(reward=reward) if isinstance(self.agent, RewardObserver):
                try:
                    self.agent.observe_reward(reward)
                except Exception as error:  # only logged: the runner asked for nothing
                    self._failed("reward", env.episode, env.step, error)
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
        """Speak, then tell the runner: `spoken`, with what went wrong as its detail."""
        assert self._observation is not None
        failure = ""
        try:
            said = await self._call("speak", episode, step, self.agent.speak)
            utterances = checked_utterances(said)
        except Exception as error:  # an agent's bug must not stop the run
            failure, utterances = self._failed("speak", episode, step, error), []
        for utterance in utterances:
            await self._say(utterance, episode, step)
        await self._send(RUNNER, episode, step, Control(command="spoken", detail=failure))

    async def _say(self, utterance: Utterance, episode: int, step: int) -> None:
        if not self.allows(self.name, utterance.recipient, utterance.schema_id):
            reject(self.bus.stats, f"say/{self.name}/{utterance.recipient}",
                   MalformedEnvelope(f"no route {self.name}->{utterance.recipient} for "
                                     f"{utterance.schema_id}"))
            return
        try:
            await self._send(utterance.recipient, episode, step, utterance.message,
                             schema_id=utterance.schema_id, trace=utterance.trace)
        except ValueError as error:  # a message of another model than the schema's
            reject(self.bus.stats, f"say/{self.name}/{utterance.recipient}", error)

    async def _act(self, episode: int, step: int) -> None:
        """Answer the act request: the checked action, or an error Control saying why not."""
        try:
            if self._observation is None or self._observed_at != (episode, step):
                raise InvalidReturn(f"no observation of episode {episode} step {step} to act on")
            choice = checked_choice(await self._call("act", episode, step, self.agent.act))
        except Exception as error:  # reported; the runner plays the default action
            detail = self._failed("act", episode, step, error)
            await self._send(RUNNER, episode, step, Control(command="error", detail=detail))
            return
        finally:
            self._inbox = []
        await self._send(RUNNER, episode, step, Action(action=choice.action), trace=choice.trace)

    async def _call(self, phase: str, episode: int, step: int,
                    method: Callable[[Observation, Sequence[Envelope]], object]) -> object:
        """Run an agent method on this step's observation and inbox, timing what it blocks."""
        assert self._observation is not None
        call = method(self._observation, tuple(self._inbox))
        if not isinstance(call, Coroutine):
            if inspect.isawaitable(call):  # not a coroutine: nothing of it to time
                return await call
            raise InvalidReturn(f"{phase} returned {_a(call)}: it must be an async method")
        longest = 0.0

        def note(slice_s: float) -> None:
            nonlocal longest
            longest = max(longest, slice_s)

        try:
            return await timed(call, note)
        finally:
            if longest > BLOCKING_WARN_S:
                self.log.warning("agent_blocked_event_loop", phase=phase, episode=episode,
                                 step=step, blocked_s=round(longest, 3))

    def _failed(self, phase: str, episode: int, step: int, error: Exception) -> str:
        """Log an agent's failure (no traceback: it is the plug-in's) and describe it."""
        detail = str(error) if isinstance(error, InvalidReturn) else repr(error)
        self.log.error("agent_failed", phase=phase, episode=episode, step=step, error=detail)
        return detail

    async def _send(self, recipient: str, episode: int, step: int, message: BaseModel,
                    schema_id: str | None = None, trace: PolicyTrace | None = None) -> None:
        await self.bus.publish(seal(message, run=self.bus.run, episode=episode, step=step,
                                    sender=self.name, recipient=recipient, schema_id=schema_id,
                                    trace=trace))
