"""The documentation site builds with warnings as errors, and its scenario reference
names every field of `Scenario` and `PPOConfig`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from runtime.reference import reference
from runtime.scenario import Scenario
from training.config import PPOConfig

ROOT = Path(__file__).parents[1]


def _fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def test_the_reference_names_every_field_with_its_type_and_default() -> None:
    table = reference(PPOConfig, "training.")
    for field in _fields(PPOConfig):
        assert f"| `training.{field}` |" in table
    assert "| `training.gamma` | float | `0.99` | Discount factor. |" in table
    scenario = reference(Scenario)
    for field in _fields(Scenario):
        assert f"| `{field}` |" in scenario
    assert "| `agents.<name>.remote` | bool | `False` |" in scenario
    assert "| `protocol.routes[].from` | str | required |" in scenario


def test_the_docs_build_strict_and_the_reference_page_holds_every_field(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    page = (site / "reference" / "index.html").read_text()
    for field in _fields(PPOConfig):
        assert f"training.{field}</code>" in page
    for field in _fields(Scenario):
        assert f"<code>{field}</code>" in page
    assert (site / "api" / "index.html").read_text().count("class=\"doc doc-heading\"") >= 10
