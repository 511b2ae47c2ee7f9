"""Which language model LLM agents use: a setting of the scenario, shared by every layer."""

from __future__ import annotations

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
