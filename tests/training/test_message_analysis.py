"""Message analysis: the information measures, and recordings whose answers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from protocols import Envelope
from runtime.cli import main
from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario
from tests.training.message_agents import CODE_BOOK
from training.analysis.information import entropy, mutual_information, topographic_similarity
from training.analysis.messages import information_metrics
from training.analysis.report import analyze_messages, listeners
from training.trajectory import assemble

AGENTS = "tests.training.message_agents"


def code_game(constant: str | None = None,
              listener: dict[str, Any] | None = None) -> dict[str, Any]:
    """Three colours, the speaker told the target, one code word to the listener: the code
    book's word for its target, or always `constant`."""
    codes = {colour: {"code": constant or word} for colour, word in CODE_BOOK.items()}
    return {
        "name": "codes",
        "env": {"game": "referential", "options": {
            "num_objects": 3, "attributes": {"colour": ["red", "blue", "green"]},
            "speaker_view": "target", "wording": "brief", "draw": "uniform"}},
        "agents": {
            "speaker": {"type": "codebook", "options": {"codes": codes}},
            "listener": {"type": f"{AGENTS}:CodeBookListener", "options": listener or {}},
        },
        "protocol": {
            "messages": {"Code": {"version": 1, "fields": {
                "code": {"type": "enum", "values": ["zub", "kep", "mov"]}}}},
            "routes": [{"from": "speaker", "to": "listener", "message": "Code"}],
        },
    }


async def recorded(scenario: Scenario, episodes: int = 60) -> list[Envelope]:
    envelopes: list[Envelope] = []
    await play(scenario, PlaySettings(episodes=episodes, seed=5, taps=[envelopes.append]))
    return envelopes


def test_entropy_of_a_uniform_choice_among_four_is_two_bits() -> None:
    assert entropy(["a", "b", "c", "d"] * 5) == pytest.approx(2.0)
    assert entropy(["a"] * 7) == 0.0


def test_mutual_information_is_full_for_a_bijection_and_zero_for_independence() -> None:
    xs = ["r", "g", "b"] * 4
    assert mutual_information(xs, [{"r": 1, "g": 2, "b": 3}[x] for x in xs]) == pytest.approx(
        math.log2(3))
    pairs = [(x, y) for x in "ab" for y in "cd"]  # every combination once: independent
    assert mutual_information([p[0] for p in pairs], [p[1] for p in pairs]) == pytest.approx(0.0)


def test_topographic_similarity_is_one_for_a_compositional_code_and_lower_for_a_holistic_one(
) -> None:
    colours, shapes = ("red", "blue", "green"), ("circle", "square", "triangle")
    meanings = [f"{c} {s}" for c in colours for s in shapes]
    compositional = [f"{c[0]}{s[0]}" for c in colours for s in shapes]  # `rc`: red circle
    holistic = [compositional[i] for i in (4, 8, 0, 6, 1, 5, 2, 7, 3)]  # same words, shuffled
    assert topographic_similarity(meanings, compositional) == pytest.approx(1.0)
    holistic_rho = topographic_similarity(meanings, holistic)
    assert holistic_rho is not None and holistic_rho < 0.0
    assert topographic_similarity(meanings, ["same"] * 9) is None  # distance never varies
    assert topographic_similarity(["red circle", "red", "blue"], ["a", "b", "c"]) is None


async def test_a_code_book_carries_the_whole_meaning_and_the_listener_follows_it() -> None:
    scenario = Scenario.model_validate(code_game())
    envelopes = await recorded(scenario)
    (channel,) = await analyze_messages(envelopes, listeners(scenario, None))
    assert channel.exchanges == 60 and channel.meanings_from == "private"
    assert channel.meaning_entropy > 1.4  # three colours, drawn uniformly
    assert channel.signalling == pytest.approx(channel.meaning_entropy)
    assert channel.signalling_ratio == pytest.approx(1.0)
    assert channel.listening == pytest.approx(channel.meaning_entropy)
    assert channel.causal_listening is not None and channel.causal_listening > 0.4
    assert channel.table["red"] == {"zub": sum(channel.table["red"].values())}
    per_iteration = information_metrics(assemble(envelopes))  # what training logs
    assert per_iteration == pytest.approx({"signalling_bits": channel.signalling,
                                           "listening_bits": channel.listening})


async def test_a_constant_message_carries_nothing_and_a_deaf_listener_is_not_moved() -> None:
    scenario = Scenario.model_validate(code_game("kep", {"deaf": True}))
    envelopes = await recorded(scenario)
    (channel,) = await analyze_messages(envelopes, listeners(scenario, None))
    assert channel.signalling == 0.0 and channel.message_entropy == 0.0
    assert channel.distinct_messages == 1 and channel.vocabulary == 1
    assert channel.causal_listening == 0.0
    assert information_metrics(assemble(envelopes)) == {"signalling_bits": 0.0,
                                                        "listening_bits": 0.0}


def test_analyze_messages_command_writes_the_report_and_a_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = tmp_path / "codes.yaml"
    scenario_file.write_text(yaml.safe_dump(code_game()))
    recording, out = tmp_path / "rec.jsonl", tmp_path / "analysis"
    assert main(["run", str(scenario_file), "--episodes", "12", "--quiet",
                 "--record", str(recording)]) == 0
    assert main(["analyze", "messages", str(recording), "--scenario", str(scenario_file),
                 "--out", str(out)]) == 0
    (channel,) = json.loads((out / "messages.json").read_text())
    assert channel["schema"] == "Code@1" and channel["signalling_ratio"] == pytest.approx(1.0)
    assert (out / "messages_speaker_listener_Code_v1.png").stat().st_size > 1000
    assert "signalling  I(meaning; message)" in capsys.readouterr().out


def test_analyze_messages_of_a_missing_recording_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "messages", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.jsonl: no such recording" in err


def test_eval_records_and_analyses_the_messages_of_its_episodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = tmp_path / "codes.yaml"
    scenario_file.write_text(yaml.safe_dump(code_game("mov")))
    recording, out = tmp_path / "eval.jsonl", tmp_path / "analysis"
    assert main(["eval", str(scenario_file), "--episodes", "10", "--record", str(recording),
                 "--messages", str(out)]) == 0
    (channel,) = json.loads((out / "messages.json").read_text())
    assert channel["exchanges"] == 10 and channel["signalling"] == 0.0
    assert channel["table"] and all(set(row) == {"mov"} for row in channel["table"].values())
    assert sum(1 for line in recording.read_text().splitlines() if '"say"' in line) == 10
    assert "success" in capsys.readouterr().out


def test_causal_listening_of_llm_agents_after_an_evaluation(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The analysis asks the scenario's own LLM listener, after the evaluation's run."""
    from tests.training.test_trainer import SCENARIO

    scenario_file = tmp_path / "codes.yaml"
    scenario_file.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    out = tmp_path / "analysis"
    assert main(["eval", str(scenario_file), "--episodes", "6", "--concurrency", "3",
                 "--messages", str(out)]) == 0
    (channel,) = json.loads((out / "messages.json").read_text())
    assert channel["exchanges"] == 6 and channel["meanings_from"] == "private"
    assert 0.0 <= channel["causal_listening"] <= 1.0
