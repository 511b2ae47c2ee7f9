"""Social learning: summaries of what the other agents did, written, recorded and read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario
from tests.training.test_message_analysis import code_game
from tests.training.test_trainer import _scenario
from training.social import SOCIAL_FILE, facts_for, latest_summaries, with_summaries
from training.trainer import train
from training.trajectory import assemble


def test_the_facts_count_each_others_messages_by_what_it_knew() -> None:
    scenario = Scenario.model_validate(code_game())
    kept: list = []  # type: ignore[type-arg]
    asyncio.run(play(scenario, PlaySettings(episodes=30, seed=0, taps=[kept.append])))
    facts = facts_for("listener", assemble(kept))
    assert facts == ("speaker: when it knew 'blue', it said 'kep' (7 times); when it knew "
                     "'green', it said 'mov' (10 times); when it knew 'red', it said 'zub' "
                     "(13 times).")  # the targets of seeds 0-29, each told by its code word
    assert facts_for("speaker", assemble(kept)) == ""  # the listener says nothing


def test_a_summary_goes_after_the_agents_own_system_prompt_with_braces_kept() -> None:
    base = Scenario.model_validate(code_game())
    scenario = with_summaries(base, base, {"speaker": "it says {zub} for red"})
    prompt = scenario.agents["speaker"].options["system_prompt"]
    assert isinstance(prompt, str)
    assert prompt.endswith("What the others did lately: it says {{zub}} for red")
    assert prompt.format_map({"agent": "x"}).endswith("it says {zub} for red")


def test_training_with_summaries_records_them_and_the_agents_read_them(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    scenario = _scenario(tmp_path, tiny_model_dir, social={"every": 1})
    train(scenario, tmp_path / "run", iterations=2, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / SOCIAL_FILE).read_text()
            .splitlines()]
    assert [(r["iteration"], r["agent"]) for r in rows] == [
        (0, "listener"), (1, "listener")]  # the speaker hears nobody
    assert all(r["facts"].startswith("speaker: when it knew ") and r["summary"] for r in rows)
    trained = yaml.safe_load((tmp_path / "run" / "scenario.yaml").read_text())
    prompt = trained["agents"]["listener"]["options"]["system_prompt"]
    last = latest_summaries(tmp_path / "run")["listener"]
    assert prompt.endswith(last.replace("{", "{{").replace("}", "}}"))
    assert "What the others did" not in trained["agents"]["speaker"]["options"]["system_prompt"]
