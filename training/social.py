"""Social learning: each learning agent reads what the others did lately, in words.

Every `every` iterations, for each learning LLM agent, the facts of the other agents'
recent messages are counted from the rollout (per sender: for each thing it alone knew,
which messages it sent and how often; `training.analysis.messages`), and the base model
(adapters off) turns them into a short summary under a schema (always valid). The
summary goes at the end of that agent's system prompt until the next refresh; the
agent never sees the others' prompts, adapters or values, only what they did. Every
summary, with the facts it was written from, is appended to OUT/social.jsonl.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field

from agents.llm.engine import InferenceEngine
from agents.llm.prompts import DEFAULT_SYSTEM_PROMPT, conversation
from agents.llm.structured import write_valid
from runtime.scenario import Scenario
from training.analysis.messages import exchanges
from training.trajectory import Trajectories

S = TypeVar("S", bound=Scenario)
SOCIAL_FILE = "social.jsonl"
SUMMARY_CHARS = 200
FACTS_PER_SENDER = 12
SYSTEM = "You summarise what players of a game did, briefly and exactly."
QUESTION = "Summarise what the other players did, in one or two sentences."
# No worked example: SmolLM2-135M copied one's words into its summary ("says go up for
# blue" for a speaker that said kep); asked plainly, it restates the counted facts.


class Summary(BaseModel):
    """What the model writes."""

    summary: str = Field(min_length=1, max_length=SUMMARY_CHARS,
                         description="What the other players did, in one or two sentences.")


def counted(things: Counter[str], most: int = 3) -> str:
    """`'a' (3 times), 'b' (1 time)`: the most common few, with their counts."""
    return ", ".join(f"'{thing}' ({n} time{'s' * (n != 1)})"
                     for thing, n in things.most_common(most))


def facts_for(reader: str, trajectories: Trajectories) -> str:
    """The other agents' messages by what they knew, counted, a line per sender."""
    said: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for exchange in exchanges(trajectories):
        if exchange.sender != reader:
            said[exchange.sender][exchange.meaning][exchange.message] += 1
    lines = []
    for sender, meanings in sorted(said.items()):
        parts = []
        for meaning, messages in sorted(meanings.items())[:FACTS_PER_SENDER]:
            parts.append(f"when it knew '{meaning}', it said {counted(messages)}")
        lines.append(f"{sender}: " + "; ".join(parts) + ".")
    return "\n".join(lines)


async def summarise(engine: InferenceEngine, facts: str) -> str:
    """The base model's summary of `facts`, greedy, under the `Summary` schema."""
    chat = conversation(SYSTEM, f"{facts}\n{QUESTION}")
    return (await write_valid(engine, chat, Summary, SUMMARY_CHARS)).summary


async def refresh(engine: InferenceEngine, trajectories: Trajectories, readers: list[str],
                  iteration: int, out: Path) -> dict[str, str]:
    """Each reader's new summary (readers with nothing to read are left out), recorded."""
    summaries = {}
    with (out / SOCIAL_FILE).open("a") as record:
        for reader in readers:
            facts = facts_for(reader, trajectories)
            if not facts:
                continue
            summaries[reader] = await summarise(engine, facts)
            record.write(json.dumps({"iteration": iteration, "agent": reader, "facts": facts,
                                     "summary": summaries[reader]}) + "\n")
    return summaries


def latest_summaries(out: Path) -> dict[str, str]:
    """The last summary of each agent in OUT/social.jsonl (a resumed run goes on with them)."""
    path = out / SOCIAL_FILE
    if not path.is_file():
        return {}
    return {row["agent"]: row["summary"]
            for row in map(json.loads, path.read_text().splitlines())}


def with_summaries(scenario: S, base: Scenario, summaries: dict[str, str]) -> S:
    """`scenario` with each summary after its agent's system prompt in `base`."""
    return with_prompt_notes(scenario, base, summaries, "What the others did lately")


def with_prompt_notes(scenario: S, base: Scenario, notes: dict[str, str], heading: str) -> S:
    """`scenario` with each agent's note (`heading: note`) after its system prompt in `base`."""
    agents = dict(scenario.agents)
    for name, note in notes.items():
        spec = agents[name]
        prompt = str(base.agents[name].options.get("system_prompt", DEFAULT_SYSTEM_PROMPT))
        escaped = note.replace("{", "{{").replace("}", "}}")  # the prompt is a template
        agents[name] = spec.model_copy(update={"options": {
            **spec.options, "system_prompt": f"{prompt}\n{heading}: {escaped}"}})
    return scenario.model_copy(update={"agents": agents})
