"""Policy distillation, route two: the teacher describes its policy in words (seed §2.1.3).

From the teacher's recorded episodes, each agent's own behaviour is counted (for each
thing it alone knew, the messages it sent; for each message it got, what it then
chose), and the teacher model itself, its adapter on, turns those facts into a short
description under a schema (greedy, always valid). The student is the base model with
that description at the end of its system prompt: no gradient, nothing of the teacher's
weights, only words.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TypeVar

from pydantic import BaseModel, Field

from agents.llm.engine import InferenceEngine
from agents.llm.prompts import conversation
from agents.llm.structured import write_valid
from runtime.scenario import Scenario
from training.analysis.messages import exchanges
from training.social import FACTS_PER_SENDER, counted, with_prompt_notes
from training.trajectory import Trajectories

S = TypeVar("S", bound=Scenario)
POLICY_CHARS = 200
HEADING = "How you play"
SYSTEM = "You describe how you played a game, so that another player can play as you did."
QUESTION = "In one or two sentences, say what you do in each case."


class PolicyDescription(BaseModel):
    """What the teacher writes."""

    policy: str = Field(min_length=1, max_length=POLICY_CHARS,
                        description="What you do in each case, in one or two sentences.")


def own_facts(agent: str, trajectories: Trajectories) -> str:
    """What `agent` said for each thing it knew, and chose after each message it got."""
    said: dict[str, Counter[str]] = defaultdict(Counter)
    chose: dict[str, Counter[str]] = defaultdict(Counter)
    for exchange in exchanges(trajectories):
        if exchange.sender == agent:
            said[exchange.meaning][exchange.message] += 1
        if exchange.recipient == agent and exchange.reply is not None:
            chose[exchange.message][exchange.reply] += 1
    lines = [f"When you knew '{meaning}', you said {counted(messages)}."
             for meaning, messages in sorted(said.items())[:FACTS_PER_SENDER]]
    lines += [f"When the message was '{message}', you chose {counted(replies)}."
              for message, replies in sorted(chose.items())[:FACTS_PER_SENDER]]
    return "\n".join(lines)


async def describe_policies(engine: InferenceEngine, trajectories: Trajectories,
                            adapters: dict[str, str]) -> dict[str, str]:
    """Each agent's description of its own policy, written under its adapter
    (`adapters`: agent -> the teacher adapter it played); agents with no facts are left out."""
    descriptions = {}
    for agent, adapter in sorted(adapters.items()):
        facts = own_facts(agent, trajectories)
        if facts:
            chat = conversation(SYSTEM, f"{facts}\n{QUESTION}")
            answer = await write_valid(engine, chat, PolicyDescription, POLICY_CHARS, adapter)
            descriptions[agent] = answer.policy
    return descriptions


def with_descriptions(scenario: S, descriptions: dict[str, str]) -> S:
    """The scenario's agents (base model) reading their descriptions in their prompts."""
    return with_prompt_notes(scenario, scenario, descriptions, HEADING)
