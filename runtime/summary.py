"""What a run came to, typed: episodes, returns, success, messages, incidents, model use."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agents.base import ModelUsage
from runtime.bus import BusStats


class EpisodeResult(BaseModel):
    """What one episode came to."""

    episode: int
    returns: dict[str, float]
    steps: int
    success: bool | None


IncidentKind = Literal["late", "failed", "illegal", "offline"]


class Incidents(BaseModel):
    """What went wrong with agents while the run went on, each counted once.

    Attributes:
        late: actions that did not come within `action_timeout_s` (default action played),
            and speaking that did not end within `speak_timeout_s` of an agent that then
            acted (its messages may come after the action); also the step in which an
            agent fell silent.
        failed: an agent's `speak` or `act` raised or returned something invalid (each
            phase counts: a failed `speak` does not cost the action).
        illegal: actions outside the legal set (a negative one included); default played.
        offline: actions played by default because the agent was offline (its last will
            or `bye` came, or it fell silent); it was not waited for.
        by_agent: incidents per agent, for tests and logs; not in the JSON.
    """

    late: int = 0
    failed: int = 0
    illegal: int = 0
    offline: int = 0
    by_agent: dict[str, int] = Field(default_factory=dict, exclude=True)  # logs name them

    def count(self, agent: str, what: IncidentKind) -> None:
        """One more incident of kind `what` by `agent`."""
        setattr(self, what, getattr(self, what) + 1)
        self.by_agent[agent] = self.by_agent.get(agent, 0) + 1

    @classmethod
    def total(cls, parts: Sequence[Incidents]) -> Incidents:
        """The sum over several runners (one per slot of a play)."""
        by_agent: Counter[str] = Counter()
        for part in parts:
            by_agent.update(part.by_agent)
        return cls(late=sum(p.late for p in parts), failed=sum(p.failed for p in parts),
                   illegal=sum(p.illegal for p in parts), offline=sum(p.offline for p in parts),
                   by_agent=dict(by_agent))


class RunSummary(BaseModel):
    """The summary of a run that `parley run --summary` writes and evaluation extends.

    Attributes:
        scenario: the scenario's name.
        episodes: episodes played.
        returns: mean return per agent over the episodes.
        success_rate: share of successful episodes, None when the game reports none.
        steps: environment steps, all episodes together.
        wall_s: seconds the run took.
        per_episode: each episode's outcome, in episode order.
        messages: bus counters.
        incidents: late, failed, illegal and offline agent steps (see Incidents).
        llm: the model use of LLM agents; None when no agent runs a model.
    """

    scenario: str
    episodes: int
    returns: dict[str, float]
    success_rate: float | None
    steps: int
    wall_s: float
    per_episode: list[EpisodeResult]
    messages: BusStats
    incidents: Incidents
    llm: ModelUsage | None = None

    @classmethod
    def of(cls, scenario: str, agents: Sequence[str], results: Sequence[EpisodeResult], *,
           wall_s: float, messages: BusStats, incidents: Incidents,
           llm: ModelUsage | None) -> RunSummary:
        """The summary of `results` (means over episodes; an agent's missing return is 0)."""
        successes = [r.success for r in results if r.success is not None]
        return cls(
            scenario=scenario, episodes=len(results),
            returns={a: statistics.fmean(r.returns.get(a, 0.0) for r in results) if results
                     else 0.0 for a in agents},
            success_rate=statistics.fmean(successes) if successes else None,
            steps=sum(r.steps for r in results), wall_s=round(wall_s, 3),
            per_episode=list(results), messages=messages, incidents=incidents, llm=llm)

    def to_json(self) -> str:
        """The `--summary` file: `llm` only when agents ran a model, as before."""
        return self.model_dump_json(indent=2, exclude={"llm"} if self.llm is None else None)
