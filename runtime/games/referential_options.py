"""The referential game's options: objects, attributes, draws, views, rounds and pay."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from runtime.games.text import GameOptions

# Adjectives in the order English puts them: "small red circle".
BUILTIN_ATTRIBUTES: dict[str, list[str]] = {
    "size": ["small", "large"],
    "colour": ["red", "blue", "green", "yellow", "purple"],
    "shape": ["circle", "square", "triangle", "star"],
}


class ReferentialOptions(GameOptions):
    """Options of the referential game (YAML `options:`)."""

    num_objects: int = Field(default=3, ge=2, le=10, description="Objects per round, K.")
    attributes: dict[str, list[str]] = Field(
        default_factory=lambda: {k: BUILTIN_ATTRIBUTES[k] for k in ("colour", "shape")},
        description="Attributes describing an object: names of built-ins (size, colour, "
        "shape) or a mapping name -> values, in the order words are written.",
    )
    distractor_similarity: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Chance that a distractor differs from the target in one attribute "
        "only, so that only a precise description tells them apart.",
    )
    draw: Literal["around_target", "uniform"] = Field(
        default="around_target",
        description="around_target: draw the target, then distractors relative to it (see "
        "distractor_similarity); the set's shape can then betray the target (with "
        "similarity 1 it is the object one attribute away from all others). uniform: draw "
        "K distinct objects, then the target among them, so the set alone says nothing about "
        "which is the target and only the message can.",
    )
    speaker_view: Literal["all", "target"] = Field(
        default="all",
        description="all: the speaker's observation lists every object and names the target; "
        "target: only the target (as in Lewis's signalling game), so every attribute word "
        "the speaker reads is one it should say.",
    )
    rounds: int = Field(default=1, ge=1, description="Rounds (steps) per episode.")
    reward_correct: float = Field(default=1.0, description="Team reward for a correct pick.")
    reward_wrong: float = Field(default=0.0, description="Team reward for a wrong pick.")
    reward_at: Literal["each_round", "end"] = Field(
        default="each_round",
        description="each_round: every pick is paid at once; end: nothing until the last "
        "round, then the rounds' mean pay (a sparse reward over `rounds` steps).",
    )
    show_score: bool = Field(
        default=False, description="Round headers say how many picks were right so far."
    )
    wording: Literal["full", "brief"] = Field(
        default="full",
        description="full: observations explain the game in sentences; brief: only the "
        "facts (`Objects: ... Target: ...`), for training, where every prompt token is "
        "paid for at rollout and at every update pass.",
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _builtin_names(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        unknown = [name for name in value if name not in BUILTIN_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown attributes {unknown}; built-ins: {list(BUILTIN_ATTRIBUTES)}")
        return {name: BUILTIN_ATTRIBUTES[name] for name in BUILTIN_ATTRIBUTES if name in value}

    @model_validator(mode="after")
    def _check_vocabulary(self) -> ReferentialOptions:
        words = [word for values in self.attributes.values() for word in values]
        if not self.attributes or any(len(v) < 2 for v in self.attributes.values()):
            raise ValueError("need at least one attribute, each with at least two values")
        if len(set(words)) != len(words) or not all(w.strip() for w in words):
            raise ValueError("attribute values must be non-empty and distinct across attributes")
        distinct = int(np.prod([len(v) for v in self.attributes.values()]))
        if self.num_objects > distinct:
            raise ValueError(f"num_objects={self.num_objects} > {distinct} distinct objects")
        return self
