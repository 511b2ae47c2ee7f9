"""A strategy in words: the model reads what an agent did and says how it plays.

The prompt gives the model the facts counted from the agent's recorded history (how
often it chose each action, how it opened, what it did after each of the other's moves)
and one worked example; the answer is decoded under the JSON schema of
`StrategyDescription`, whose text is short enough that the grammar always closes within
the token budget, so the description is always valid.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.llm.engine import InferenceEngine
from agents.llm.prompts import conversation
from agents.llm.structured import write_valid
from training.analysis.policies import OPENING, EmpiricalStrategy

DESCRIPTION_CHARS = 160
SYSTEM = "You describe how players play repeated games, in plain English."
QUESTION = ("In one sentence, describe its strategy: how it opens and how it answers the "
            "other player's moves.")
# One worked example (of another game, so it cannot be copied): SmolLM2-135M without it
# answers with the question's own words; with it, it cites the opening and the replies.
EXAMPLE = f"""A player (X) in a repeated game with actions up, down.
Over 50 rounds it played up 10%, down 90%.
In the first round (10 times) it played up 50%, down 50%.
After it played up and the other played up (3 times) it played down 100%.
After it played up and the other played down (2 times) it played down 100%.
After it played down and the other played up (20 times) it played down 100%.
After it played down and the other played down (15 times) it played down 100%.
{QUESTION}"""
EXAMPLE_ANSWER = ('{"strategy": "It opens with up or down at random, then plays down '
                  'whatever the other does."}')


class StrategyDescription(BaseModel):
    """What the model writes: one sentence on how the agent plays."""

    strategy: str = Field(min_length=1, max_length=DESCRIPTION_CHARS,
                          description="How the player opens and how it answers the other's "
                          "moves, in one sentence.")


def facts(strategy: EmpiricalStrategy, names: list[str]) -> str:
    """The counted strategy in sentences: overall shares, the opening, each reply."""
    totals = {a: sum(strategy.strategy[state][a] * count
                     for state, count in strategy.counts.items()) for a in names}
    overall = ", ".join(f"{a} {totals[a] / strategy.decisions:.0%}" for a in names)
    lines = [f"Over {strategy.decisions} rounds it played {overall}."]
    for state, count in strategy.counts.items():
        mix = ", ".join(f"{a} {p:.0%}" for a, p in strategy.strategy[state].items() if p)
        where = "In the first round" if state == OPENING else state.replace(
            "after you", "After it played").replace(", they", " and the other played")
        lines.append(f"{where} ({count} times) it played {mix}.")
    return "\n".join(lines)


def description_prompt(agent: str, strategy: EmpiricalStrategy, names: list[str]) -> str:
    """The user turn the model answers."""
    return (f"A player ({agent}) in a repeated game with actions {', '.join(names)}.\n"
            f"{facts(strategy, names)}\n{QUESTION}")


async def describe_strategy(engine: InferenceEngine, prompt: str) -> StrategyDescription:
    """The model's description of the strategy in `prompt`, greedy, always schema-valid."""
    chat = [*conversation(SYSTEM, EXAMPLE), {"role": "assistant", "content": EXAMPLE_ANSWER},
            {"role": "user", "content": prompt}]
    return await write_valid(engine, chat, StrategyDescription, DESCRIPTION_CHARS)
