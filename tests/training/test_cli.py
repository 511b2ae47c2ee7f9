"""`parley train`, `plot` and `eval` wired end to end (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import main
from tests.training.test_trainer import SCENARIO


def test_train_then_plot_then_eval_the_adapters(tiny_model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "codes.yaml"
    scenario.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    out = tmp_path / "run"
    assert main(["train", str(scenario), "--iterations", "1", "--out", str(out),
                 "--no-progress"]) == 0
    adapters = out / "adapters"
    assert {p.name for p in adapters.iterdir() if p.is_dir()} == {"speaker", "listener"}
    assert main(["plot", str(out)]) == 0
    assert (out / "plots" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    summary = tmp_path / "eval.json"
    assert main(["eval", str(scenario), "--adapters", str(adapters), "--episodes", "3",
                 "--summary", str(summary)]) == 0
    result = json.loads(summary.read_text())
    assert result["episodes"] == 3 and len(result["success_rate_ci95"]) == 2
    assert "success" in capsys.readouterr().out
    # The same evaluation with episodes at once, batched in one engine with the adapters.
    assert main(["eval", str(scenario), "--adapters", str(adapters), "--episodes", "5",
                 "--concurrency", "3", "--summary", str(summary)]) == 0
    batched = json.loads(summary.read_text())
    assert batched["episodes"] == 5 and len(batched["per_episode"]) == 5
    assert batched["llm"]["valid"] + batched["llm"]["rejected"] == 5  # one message each
    assert batched["success_rate"] == batched["successes"] / 5


def test_train_rejects_bad_training_settings(tiny_model_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "codes.yaml"
    text = SCENARIO.replace("MODEL", str(tiny_model_dir)).replace("  epochs: 1", "  epochs: -1")
    scenario.write_text(text)
    assert main(["train", str(scenario), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "training.epochs" in error and f"{scenario}:" in error


def test_set_overrides_a_setting_and_bad_ones_are_one_line_errors(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "codes.yaml"
    scenario.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    out = tmp_path / "run"
    assert main(["train", str(scenario), "--iterations", "1", "--out", str(out), "--no-progress",
                 "--set", "training.critic=none", "--set", "training.seed=7"]) == 0
    written = (out / "scenario.yaml").read_text()
    assert "critic: none" in written and "seed: 7" in written
    assert main(["train", str(scenario), "--out", str(tmp_path / "x"),
                 "--set", "training.critic=telepathic"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert any("training.critic" in line and f"{scenario}:" in line for line in error)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(scenario), "--set", "no_equals_sign"])
    assert exit_info.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


RPS = Path(__file__).parents[2] / "scenarios" / "rps.yaml"


def test_eval_summary_into_missing_folder_is_refused_before_evaluating(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "eval.json"
    assert main(["eval", str(RPS), "--summary", str(target)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --summary {target}: folder {tmp_path / 'missing'} does not exist"]


def test_train_out_below_a_file_is_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", str(RPS), "--out", str(blocker / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out {blocker / 'run'}: cannot be made, {blocker} is a file"]
    assert main(["train", str(RPS), "--resume", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --resume {tmp_path / 'nothing'}: no such folder"]
