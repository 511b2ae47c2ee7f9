"""Options of `type: llm` agents: prompts, sampling and exploration settings."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agents.llm import prompts

UCB_DEFAULT_C = math.sqrt(2.0)
_TEMPLATE_FIELDS = {
    "system_prompt": prompts.SYSTEM_FIELDS,
    "turn_template": prompts.TURN_FIELDS,
    "message_template": prompts.MESSAGE_FIELDS,
    "action_template": prompts.ACTION_FIELDS,
}


class LLMAgentOptions(BaseModel):
    """Options of `type: llm` (the `options:` mapping of an agent in a scenario)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system_prompt: str = Field(
        default=prompts.DEFAULT_SYSTEM_PROMPT,
        description="System prompt; may use {agent}. Write literal braces as {{ and }}.",
    )
    turn_template: str = Field(
        default=prompts.DEFAULT_TURN_TEMPLATE,
        description="The agent's view of a step; placeholders {observation}, {inbox}, "
        "{actions} (legal action names) and {agent}.",
    )
    message_template: str = Field(
        default=prompts.DEFAULT_MESSAGE_TEMPLATE,
        description="Message-phase instruction after the turn; placeholders {recipient}, "
        "{schema} (JSON Schema), {schema_name} and {agent}.",
    )
    action_template: str = Field(
        default=prompts.DEFAULT_ACTION_TEMPLATE,
        description="Action-phase instruction after the turn; placeholders {actions}, {agent}.",
    )
    max_message_tokens: int = Field(
        default=96, ge=1, description="Most tokens one message may take; longer ones are cut "
        "off and re-asked."
    )
    temperature: float = Field(
        default=1.0, ge=0.0, description="Sampling temperature of messages; 0 = greedy."
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling of messages.")
    action_temperature: float = Field(
        default=1.0, ge=0.0,
        description="Temperature of the softmax over legal actions' scores; 0 = greedy.",
    )
    epsilon: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Epsilon-greedy: weight of the uniform distribution over legal actions.",
    )
    ucb: bool | float = Field(
        default=False,
        description="UCB1 over actions for repeated games: false (off), true (c = sqrt 2) "
        "or the exploration coefficient c >= 0. Replaces the softmax by the argmax of the "
        "UCB score (still mixed with epsilon).",
    )
    reask_limit: int = Field(
        default=2, ge=0, description="Re-asks (error fed back) before an invalid message is "
        "dropped and counted as rejected."
    )
    adapter: str | None = Field(
        default=None, description="Name of the LoRA adapter this agent plays with (agents may "
        "share one); None = the base model."
    )

    @field_validator("ucb")
    @classmethod
    def _ucb_non_negative(cls, value: bool | float) -> bool | float:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("ucb coefficient must be >= 0")
        return value

    @field_validator("system_prompt", "turn_template", "message_template", "action_template")
    @classmethod
    def _known_placeholders(cls, value: str, info: ValidationInfo) -> str:
        assert info.field_name is not None
        return prompts.check_template(value, _TEMPLATE_FIELDS[info.field_name])

    @property
    def ucb_c(self) -> float | None:
        """The UCB coefficient, or None when UCB is off."""
        if isinstance(self.ucb, bool):
            return UCB_DEFAULT_C if self.ucb else None
        return float(self.ucb)
