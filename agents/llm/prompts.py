"""Prompts of the LLM agent: templates, their placeholders, and the chat-template rendering.

A prompt is the system prompt plus one user turn: the agent's view of the step
(`turn_template`: observation, inbox, legal actions) followed by the phase's
instruction (`message_template`: recipient and JSON Schema; `action_template`:
the legal actions). Templates use `str.format` placeholders; each template may
use only its own placeholders, checked when the options are validated, so a
typo fails at start-up and not mid-run.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence

from pydantic import JsonValue
from transformers import PreTrainedTokenizerBase

from protocols import BROADCAST, Envelope, Observation

ChatMessage = dict[str, str]

DEFAULT_SYSTEM_PROMPT = (
    "You are {agent}, an agent in a multi-agent game. Each step you may send short "
    "messages to the other agents, then you choose an action. Work with the others "
    "to get the highest reward."
)
DEFAULT_TURN_TEMPLATE = (
    "You are {agent}.\n"
    "Observation:\n{observation}\n\n"
    "Messages you received:\n{inbox}\n\n"
    "Legal actions: {actions}"
)
DEFAULT_MESSAGE_TEMPLATE = (
    "Write one message to {recipient}. Answer with a JSON object of type {schema_name} "
    "that follows this JSON Schema:\n{schema}"
)
DEFAULT_ACTION_TEMPLATE = (
    "Choose your action. Answer with the action's name only, one of: {actions}"
)
REASK_TEMPLATE = "That message is not valid: {error}\nWrite the JSON object again, fixed."

SYSTEM_FIELDS = frozenset({"agent"})
TURN_FIELDS = frozenset({"observation", "inbox", "actions", "agent"})
MESSAGE_FIELDS = frozenset({"recipient", "schema", "schema_name", "agent"})
ACTION_FIELDS = frozenset({"actions", "agent"})
NO_MESSAGES = "(none)"


def check_template(template: str, allowed: frozenset[str]) -> str:
    """Return `template` if it parses and uses only `allowed` placeholders.

    Raises:
        ValueError: on a malformed template or an unknown placeholder (write
            literal braces as `{{` and `}}`).
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"malformed template: {error}") from None
    unknown = names - allowed
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)} "
            "(write literal braces as '{{' and '}}')"
        )
    return template


def render_inbox(inbox: Sequence[Envelope]) -> str:
    """One line per received message: `From <sender>: <payload JSON>`."""
    if not inbox:
        return NO_MESSAGES
    return "\n".join(
        f"From {env.sender}: {env.payload_json()}"
        for env in inbox
    )


def render_actions(observation: Observation) -> str:
    """The names of the legal actions, comma-separated (the mask is honoured)."""
    return ", ".join(observation.action_names[i] for i in observation.legal_actions)


def render_turn(
    template: str, *, agent: str, observation: Observation, inbox: Sequence[Envelope]
) -> str:
    """The agent's view of this step."""
    return template.format_map(
        {
            "agent": agent,
            "observation": observation.text,
            "inbox": render_inbox(inbox),
            "actions": render_actions(observation),
        }
    )


def describe_recipient(recipient: str) -> str:
    """How a message's recipient is named in a prompt."""
    return "all agents" if recipient == BROADCAST else recipient


def render_message_instruction(
    template: str, *, agent: str, recipient: str, schema_id: str, schema: dict[str, JsonValue]
) -> str:
    """The message-phase instruction: whom to write to, and the JSON Schema to follow."""
    return template.format_map(
        {
            "agent": agent,
            "recipient": describe_recipient(recipient),
            "schema_name": schema_id.partition("@")[0],
            "schema": json.dumps(schema, ensure_ascii=False),
        }
    )


def render_action_instruction(template: str, *, agent: str, observation: Observation) -> str:
    """The action-phase instruction, listing the legal actions."""
    return template.format_map({"agent": agent, "actions": render_actions(observation)})


def conversation(system: str, user: str) -> list[ChatMessage]:
    """A chat of the system prompt and one user turn."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def chat_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[ChatMessage]
) -> list[int]:
    """Token ids of `messages` through the tokenizer's chat template, ready for the answer.

    The template is rendered to text and then tokenized without extra special
    tokens: the template already holds them, and the text path behaves the same
    across transformers versions (whose `tokenize=True` return types differ).
    A tokenizer without a chat template gets a plain `role: content` layout.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        if not isinstance(text, str):
            raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    else:
        text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]
