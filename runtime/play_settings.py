"""What a play is asked for (`PlaySettings`), and whether a scenario can be played so.

`runtime.play` runs the episodes; this module holds the request and its checks, made
before any bus is opened or agent built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocols import RUNNER, Envelope
from runtime.envs import agents_mismatch, make_env
from runtime.scenario import Scenario

if TYPE_CHECKING:
    from agents.llm.engine import InferenceEngine

Tap = Callable[[Envelope], None]
"""Sees every envelope of the run, in publish order per slot (a recorder, a live view)."""


@dataclass
class PlaySettings:
    """What a play is asked for.

    Attributes:
        episodes: episodes to play (ignored when `serve_only`).
        seed: seeds the envs and every agent.
        concurrency: episodes played at once, each slot on a bus of its own.
        bus: `memory`, or `mqtt://HOST:PORT` / `mqtts://...` for a broker.
        run_id: the run id on the bus (default: the scenario's name); slots add `-<n>`.
        adapters: a folder of trained LoRA adapters for LLM agents to play.
        engine: the inference engine model-driven agents share (training's).
        serve_only: host only this agent, for a runner in another process (`parley agent`).
        taps: callables that see every envelope.
        timeout_grace_s: how long agents may finish after the runner's stop.
        credentials: name -> `mqtt://USER:PASS@HOST:PORT` (`parley broker-config`): the
            login of `runner` and of each agent this process hosts; `bus` still says
            where the broker is (and whether TLS is used).
        require_auth: refuse an MQTT bus without a login (BusConnectionError).
        blocks: which episode blocks (`episode_blocks` indices) this play runs; None:
            all. Training's Ray workers each run some, under the run ids and seeds the
            one-process play would give them, so the episodes come out the same.
        remote_slots: the remote agents serve every slot (training's `parley agent
            --training` processes are told the episodes and concurrency); otherwise a
            play with remote agents must have concurrency 1.
    """

    episodes: int
    seed: int
    concurrency: int = 1
    bus: str = "memory"
    run_id: str | None = None
    adapters: str | None = None
    engine: InferenceEngine | None = None
    serve_only: str | None = None
    taps: Sequence[Tap] = field(default_factory=list)
    timeout_grace_s: float = 10.0
    credentials: Mapping[str, str] | None = None
    require_auth: bool = False
    blocks: Sequence[int] | None = None
    remote_slots: bool = False


def check_settings(scenario: Scenario, settings: PlaySettings) -> None:
    """ValueError, saying what, when the scenario cannot be played as `settings` ask."""
    if settings.episodes < 0 or settings.concurrency < 1:
        raise ValueError("episodes must be >= 0 and concurrency >= 1")
    if settings.serve_only is not None and settings.serve_only not in scenario.agents:
        raise ValueError(f"--agent {settings.serve_only!r}: the scenario has "
                         f"{', '.join(scenario.agents)}")
    remote = [name for name, spec in scenario.agents.items() if spec.remote]
    if remote and settings.concurrency > 1 and not (settings.remote_slots or
                                                    settings.serve_only):
        raise ValueError(f"remote agents ({', '.join(remote)}) play one episode at a time: "
                         "use concurrency 1")
    if settings.credentials is not None:
        _check_credentials(scenario, settings, settings.credentials)
    mismatch = agents_mismatch(scenario.agents, make_env(scenario.env).possible_agents)
    if mismatch:
        raise ValueError(mismatch)


def _check_credentials(scenario: Scenario, settings: PlaySettings,
                       credentials: Mapping[str, str]) -> None:
    if not settings.bus.startswith(("mqtt://", "mqtts://")):
        raise ValueError("credentials are logins for a broker: use --bus mqtt://HOST:PORT")
    if settings.concurrency > 1:  # slots play under run ids of their own, which the ACL lacks
        raise ValueError("credentials are for one run id: use concurrency 1")
    local = [n for n, s in scenario.agents.items() if not s.remote]
    needed = [settings.serve_only] if settings.serve_only else [RUNNER, *local]
    missing = [name for name in needed if name not in credentials]
    if missing:
        raise ValueError(f"the credentials have no login for {', '.join(missing)}")
