"""The adapters shipped for `make run`: they load, and the trained pair beats the untrained."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from runtime.preflight import preflight
from runtime.scenario import load_scenario
from training.evaluate import evaluate

SCENARIOS = Path(__file__).parents[2] / "scenarios"


def test_the_default_scenario_is_the_game_its_adapters_were_trained_on() -> None:
    played = yaml.safe_load((SCENARIOS / "referential.yaml").read_text())
    trained = yaml.safe_load((SCENARIOS / "referential_attributes.yaml").read_text())
    for section in ("env", "model", "agents", "protocol"):
        assert played[section] == trained[section], section


def test_the_shipped_adapters_hold_each_llm_agent_and_stay_small() -> None:
    scenario = load_scenario(SCENARIOS / "referential.yaml")
    shipped = scenario.shipped_adapters()
    assert shipped is not None and Path(shipped) == SCENARIOS / "trained" / "referential"
    preflight(scenario, shipped)  # every LLM agent finds its adapter there
    files = {str(f.relative_to(shipped)): f.stat().st_size
             for f in Path(shipped).rglob("*") if f.is_file()}
    assert set(files) == {f"{agent}/{name}" for agent in ("speaker", "listener")
                          for name in ("adapter_config.json", "adapter_model.safetensors")}
    assert sum(files.values()) < 2_000_000  # adapters only, no base weights


@pytest.mark.slow
def test_the_trained_pair_beats_the_untrained_on_a_fixed_seed() -> None:
    scenario = load_scenario(SCENARIOS / "referential.yaml")
    trained, untrained = (
        asyncio.run(evaluate(scenario, 24, seed=10_000, adapters=adapters, concurrency=12))
        for adapters in (scenario.shipped_adapters(), None))
    assert trained.success_rate is not None and untrained.success_rate is not None
    assert trained.success_rate >= 0.9
    assert trained.success_rate > untrained.success_rate + 0.3
