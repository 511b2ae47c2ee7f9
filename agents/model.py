"""Which language model LLM agents use: a setting of the scenario, shared by every layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Which language model LLM agents use, and where it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        default="smollm2-135m-instruct",
        description="`smollm2-135m-instruct` (shipped offline), a hub id, a local folder, "
        "or a .gguf file.",
    )
    dtype: str = Field(default="float32", description="torch dtype: float32, bfloat16, float16.")
    device: str = Field(default="auto", description="cpu, cuda, or auto (cuda when present).")
    attention: Literal["auto", "eager", "sdpa"] = Field(
        default="auto",
        description="attention kernel: auto is eager for bfloat16 and float16 on the CPU "
        "(torch's CPU flash-attention backward runs about 4x slower there than in float32), "
        "sdpa otherwise.",
    )
