"""TrainScenario: a scenario whose `training:` section is a validated PPOConfig.

The runtime's `Scenario` keeps `training` opaque (runtime must not import
training); `parley train` loads the same YAML file as a `TrainScenario`, so a
typo under `training:` is an error that names its file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from runtime.scenario import Scenario
from runtime.scenario_yaml import load_yaml_model
from training.config import PPOConfig


class TrainScenario(Scenario):
    """A scenario with typed PPO settings (defaults when the file has no `training:`)."""

    # The base class types the field as opaque JSON; here it is the real model.
    training: PPOConfig = Field(  # type: ignore[assignment]
        default_factory=PPOConfig, description="PPO settings of `parley train`."
    )


def load_train_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainScenario:
    """Load a scenario file for training; ScenarioError lists every problem with its line."""
    return load_yaml_model(Path(path), TrainScenario, overrides)
