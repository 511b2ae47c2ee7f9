"""`parley analyze messages`: what a run's messages carried, per channel, from its envelopes.

An exchange is one message with what surrounds it: the sender's meaning (what it alone
knew: its observation's `private` part where the game names it, else its whole
observation text), the message as text, and the recipient's action at that step by
name. A channel is one (sender, recipient, schema); each gets the measures of
`training.analysis.information` and a meaning x message table for the heatmap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from protocols import Action, Envelope
from training.analysis.information import entropy, mutual_information, topographic_similarity
from training.trajectory import AgentStep, Trajectories


@dataclass(frozen=True)
class Exchange:
    """One message, what its sender meant, and what its recipient then did."""

    sender: str
    recipient: str
    schema: str
    meaning: str
    private: bool  # the meaning is what the game named private, not the whole observation
    message: str
    reply: str | None
    said: Envelope
    heard_by: AgentStep | None


class ChannelReport(BaseModel):
    """The measures of one channel (sender -> recipient, one schema); bits throughout."""

    sender: str
    recipient: str
    schema_id: str = Field(alias="schema")
    exchanges: int
    meanings_from: Literal["private", "observation"] = Field(
        description="private: the game named what the sender alone knew; observation: its "
        "whole observation text stood in (every distinct text is a distinct meaning).")
    meaning_entropy: float = Field(description="H(meaning)")
    message_entropy: float = Field(description="H(message)")
    distinct_messages: int
    vocabulary: int = Field(description="Distinct words over all messages.")
    mean_length: float = Field(description="Characters per message.")
    signalling: float = Field(description="I(meaning; message): positive signalling.")
    signalling_ratio: float | None = Field(
        description="I(meaning; message) / H(meaning): 1 when the message names the meaning.")
    listening: float | None = Field(
        description="I(message; recipient's action by name); None for broadcasts.")
    topographic_similarity: float | None = Field(
        description="Spearman rho of meaning vs message distances, for attribute meanings.")
    causal_listening: float | None = Field(
        default=None, description="Mean total variation between the recipient's action "
        "distributions with the real message and with a shuffled one (needs the model).")
    table: dict[str, dict[str, int]] = Field(
        description="meaning -> message -> count, for the heatmap.")


def message_text(envelope: Envelope) -> str:
    """A one-field message as its value (`zub`, a sentence); others as sorted JSON."""
    fields = envelope.payload.model_dump(mode="json")
    if len(fields) == 1:
        (value,) = fields.values()
        if isinstance(value, str):
            return value
    return envelope.payload_json(sort_keys=True)


def exchanges(trajectories: Trajectories) -> list[Exchange]:
    """Every message of a run with its sender's meaning and its recipient's reply."""
    steps = {(step.agent, *step.key): step for step in trajectories.steps}
    found: list[Exchange] = []
    for step in trajectories.steps:
        private = step.observation.private
        meaning = private if private is not None else step.observation.text
        for said in step.said:
            heard_by = steps.get((said.recipient, *step.key))
            found.append(Exchange(
                sender=said.sender, recipient=said.recipient, schema=said.schema_id,
                meaning=meaning, private=private is not None, message=message_text(said),
                reply=_reply(heard_by), said=said, heard_by=heard_by))
    return found


def _reply(step: AgentStep | None) -> str | None:
    """The recipient's action at the step of the message, by its name."""
    if step is None or step.action is None:
        return None
    action = step.action.payload
    assert isinstance(action, Action)  # AgentStep.action holds Action envelopes only
    names = step.observation.action_names
    return names[action.action] if action.action < len(names) else f"action {action.action}"


def channels(found: Iterable[Exchange]) -> dict[tuple[str, str, str], list[Exchange]]:
    """Exchanges grouped by (sender, recipient, schema), in a stable order."""
    grouped: dict[tuple[str, str, str], list[Exchange]] = defaultdict(list)
    for exchange in found:
        grouped[exchange.sender, exchange.recipient, exchange.schema].append(exchange)
    return dict(sorted(grouped.items()))


def information_metrics(trajectories: Trajectories) -> dict[str, float]:
    """Per iteration, over all channels: bits of signalling and of listening, per message.

    Signalling and listening are each channel's, weighted by its message count.
    """
    found = exchanges(trajectories)
    if not found:
        return {}
    grouped = channels(found).values()
    replied = [[e for e in channel if e.reply is not None] for channel in grouped]
    metrics = {"signalling_bits": sum(
        len(c) * mutual_information([e.meaning for e in c], [e.message for e in c])
        for c in grouped) / len(found)}
    if any(replied):
        metrics["listening_bits"] = sum(
            len(c) * mutual_information([e.message for e in c], [e.reply for e in c])
            for c in replied) / sum(map(len, replied))
    return metrics


def report(channel: Sequence[Exchange]) -> ChannelReport:
    """The measures of one channel's exchanges (at least one)."""
    first = channel[0]
    meanings = [e.meaning for e in channel]
    messages = [e.message for e in channel]
    replied = [e for e in channel if e.reply is not None]
    h_meaning = entropy(meanings)
    signalling = mutual_information(meanings, messages)
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for meaning, message in zip(meanings, messages, strict=True):
        table[meaning][message] += 1
    return ChannelReport(
        sender=first.sender, recipient=first.recipient, schema=first.schema,
        exchanges=len(channel),
        meanings_from="private" if all(e.private for e in channel) else "observation",
        meaning_entropy=h_meaning, message_entropy=entropy(messages),
        distinct_messages=len(set(messages)),
        vocabulary=len({word for m in messages for word in m.split()}),
        mean_length=sum(map(len, messages)) / len(messages), signalling=signalling,
        signalling_ratio=signalling / h_meaning if h_meaning > 0 else None,
        listening=(mutual_information([e.message for e in replied], [e.reply for e in replied])
                   if replied else None),
        topographic_similarity=topographic_similarity(meanings, messages),
        table={meaning: dict(counts.most_common()) for meaning, counts in sorted(table.items())},
    )
