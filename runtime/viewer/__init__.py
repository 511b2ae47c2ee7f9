"""`parley view`: a recording (or a training run) as one self-contained HTML page.

The page is `page.html` with its style (`view.css`), its script (`view.js`) and the
run's data (JSON) inlined, so it opens from a file with no network. The data: the run's
summary, and each episode as steps of events (what each agent saw, said and did, its
reward) and its end. The script draws the timeline, the per-episode conversations and
the filters; `#hide=AGENT,...&episode=N` in the address sets the filters on load.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from protocols import Action, Envelope, EpisodeEnd, Observation, Reward
from runtime.console import action_label, observation_summary

Event = dict[str, Any]


@dataclass
class _Episode:
    run: str
    episode: int
    steps: dict[int, list[Event]] = field(default_factory=dict)
    end: dict[str, Any] | None = None

    def add(self, step: int, event: Event) -> None:
        self.steps.setdefault(step, []).append(event)

    def as_data(self) -> dict[str, Any]:
        return {"run": self.run, "episode": self.episode, "end": self.end,
                "steps": [{"step": s, "events": e} for s, e in sorted(self.steps.items())]}


def episodes_data(envelopes: Iterable[Envelope], checked: bool) -> list[dict[str, Any]]:
    """Each episode of a recording as data: its steps' events and its end, in order.

    `checked`: the messages were validated against the run's schemas (`--scenario`).
    """
    episodes: dict[tuple[str, int], _Episode] = {}
    names: dict[str, list[str]] = {}
    for envelope in envelopes:
        key = (envelope.run, envelope.episode)
        event = _event(envelope, names, checked)
        if event is None:
            continue
        episode = episodes.setdefault(key, _Episode(*key))
        if event["kind"] == "end":
            episode.end = event
        else:
            episode.add(envelope.step, event)
    return [e.as_data() for e in episodes.values()]


def _event(envelope: Envelope, names: dict[str, list[str]], checked: bool) -> Event | None:
    """One envelope as a timeline event (None for the runtime's coordination)."""
    if envelope.kind == "say":
        return {"kind": "say", "agent": envelope.sender, "to": envelope.recipient,
                "schema": envelope.schema_id, "text": envelope.payload_json(),
                "valid": True if checked else None}
    match envelope.payload:
        case Observation() as seen:
            names[envelope.recipient] = seen.action_names
            return {"kind": "observation", "agent": envelope.recipient, "text": seen.text,
                    "short": observation_summary(envelope.recipient, seen)}
        case Action(action=action):
            return {"kind": "action", "agent": envelope.sender,
                    "label": action_label(names.get(envelope.sender, []), action)}
        case Reward(reward=reward):
            return {"kind": "reward", "agent": envelope.recipient, "value": reward}
        case EpisodeEnd(returns=returns, steps=steps, success=success):
            return {"kind": "end", "returns": returns, "steps": steps, "success": success}
    return None


def run_summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Episodes, success rate, mean return per agent and messages of the episodes' data."""
    ends = [e["end"] for e in episodes if e["end"] is not None]
    agents = sorted({event["agent"] for e in episodes for s in e["steps"]
                     for event in s["events"]})
    successes = [end["success"] for end in ends if end["success"] is not None]
    returns = {agent: sum(end["returns"].get(agent, 0.0) for end in ends) / len(ends)
               for agent in agents} if ends else {}
    messages = sum(1 for e in episodes for s in e["steps"] for event in s["events"]
                   if event["kind"] == "say")
    return {"episodes": len(episodes), "agents": agents, "returns": returns,
            "success_rate": sum(successes) / len(successes) if successes else None,
            "messages": messages}


def render_page(title: str, data: dict[str, Any]) -> str:
    """The whole page: template, style, script and data in one string."""
    assets = resources.files(__name__)
    page = (assets / "page.html").read_text(encoding="utf-8")
    # `</` cannot close the script element that holds the data once escaped.
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return (page.replace("{{title}}", html.escape(title))
            .replace("{{style}}", (assets / "view.css").read_text(encoding="utf-8"))
            .replace("{{script}}", (assets / "view.js").read_text(encoding="utf-8"))
            .replace("{{data}}", payload))


def recording_page(title: str, envelopes: Iterable[Envelope], checked: bool) -> str:
    """The page of one recording."""
    episodes = episodes_data(envelopes, checked)
    return render_page(title, {"kind": "recording", "title": title,
                               "summary": run_summary(episodes), "episodes": episodes})
