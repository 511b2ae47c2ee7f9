"""Agents that load the shared engine and its adapters at once, on their first calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import agents.llm.engine as engine_module
from agents.llm.adapters import attach_adapters, save_adapters
from agents.llm.loading import load_model
from agents.model import ModelConfig
from training.evaluate import evaluate
from training.train_scenario import load_train_scenario

from ..training.test_trainer import SCENARIO


def test_many_agents_loading_the_engine_and_adapters_at_once_all_play(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    save_adapters(attach_adapters(model, ["speaker", "listener"], rank=2), tmp_path / "trained")
    monkeypatch.setattr(engine_module, "_ENGINES", {})  # no engine loaded yet in this process
    path = tmp_path / "codes.yaml"
    path.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    scenario = load_train_scenario(path)
    # 12 slots: 24 agents whose first calls each load the model and the adapters.
    summary = asyncio.run(evaluate(scenario, 24, seed=0, adapters=str(tmp_path / "trained"),
                                   concurrency=12))
    assert summary.incidents.failed == 0
    assert summary.llm is not None and summary.llm.valid == 24
