"""MkDocs hook: the scenario reference is written from the models at build time."""

from __future__ import annotations

from typing import Any

from runtime.reference import reference
from training.config import PPOConfig
from training.train_scenario import TrainScenario

MARKERS = {
    "<!-- scenario-reference -->": lambda: reference(TrainScenario),
    "<!-- ppo-reference -->": lambda: reference(PPOConfig, "training."),
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, table in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, table())
    return markdown
