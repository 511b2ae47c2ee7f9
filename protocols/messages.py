"""The built-in message kinds that travel in envelopes.

Each is a frozen pydantic model with a string discriminator, so a payload read
off the wire is validated once at the edge and passed around typed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Kind = Literal["observation", "action", "say", "reward", "episode_end", "control"]
KINDS: tuple[Kind, ...] = ("observation", "action", "say", "reward", "episode_end", "control")


class Message(BaseModel):
    """Base of every payload: frozen, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Observation(Message):
    """What one agent sees at one step: text for language agents, numbers for the rest."""

    kind: Literal["observation"] = "observation"
    text: str = Field(description="The observation rendered for a language model.")
    data: JsonValue = Field(default=None, description="The numeric observation, as JSON.")
    action_names: list[str] = Field(description="Names of every action, by index.")
    action_mask: list[bool] | None = Field(
        default=None, description="Legal actions; None when every action is legal."
    )
    private: str | None = Field(
        default=None, description="What only this agent knows now, in words, where the game "
        "says (a speaker's target): what its messages should carry. Already in `text`; kept "
        "apart so that recordings can be analysed (`parley analyze messages`).",
    )

    @property
    def legal_actions(self) -> list[int]:
        """Indices of the actions this agent may take now."""
        if self.action_mask is None:
            return list(range(len(self.action_names)))
        return [i for i, ok in enumerate(self.action_mask) if ok]


class Action(Message):
    """An agent's choice at one step."""

    kind: Literal["action"] = "action"
    action: int = Field(ge=0, description="Index into the observation's action_names.")


class Reward(Message):
    """The reward an agent got for the last step."""

    kind: Literal["reward"] = "reward"
    reward: float
    terminated: bool = False
    truncated: bool = False


class EpisodeEnd(Message):
    """Sent to all when an episode is over, with each agent's return."""

    kind: Literal["episode_end"] = "episode_end"
    returns: dict[str, float]
    steps: int = Field(ge=0)
    success: bool | None = None


ControlCommand = Literal["hello", "bye", "offline", "act", "spoken", "error", "stop", "play",
                         "ready"]
"""`play` and `ready` pass between a trainer and its remote agents (`runtime.follow`)."""


class Control(Message):
    """Runtime coordination: presence, phase changes, errors."""

    kind: Literal["control"] = "control"
    command: ControlCommand
    detail: str = ""


BuiltinMessage = Observation | Action | Reward | EpisodeEnd | Control
"""The messages the runtime itself sends; everything else an agent says is kind `say`."""

BUILTIN_MESSAGES: dict[str, type[BuiltinMessage]] = {
    "Observation@1": Observation,
    "Action@1": Action,
    "Reward@1": Reward,
    "EpisodeEnd@1": EpisodeEnd,
    "Control@1": Control,
}
