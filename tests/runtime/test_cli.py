"""The `parley` command: exit codes, one-line errors, summaries, recordings, replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.recorder import comparable, read_recording

ROOT = Path(__file__).parents[2]
RPS = ROOT / "scenarios" / "rps.yaml"


def test_validate_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(RPS)]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_scenario_exits_2_with_one_line_per_error_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nenv: {game: referential, colour: red}\nagents:\n  a: {tpye: x}\n")
    for command in (["validate"], ["run"]):
        done = subprocess.run([sys.executable, "-m", "runtime.cli", *command, str(bad)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert f"error: {bad}:2: env.colour: Extra inputs are not permitted" in lines
        assert f"error: {bad}:4: agents.a.tpye: Extra inputs are not permitted" in lines


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(RPS), "--episodes", "0"])
    assert exited.value.code == 2
    assert "--episodes: must be at least 1" in capsys.readouterr().err


def test_unknown_bus_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(RPS), "--bus", "carrier-pigeon://x", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --bus 'carrier-pigeon://x'")


def test_run_writes_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    assert main(["run", str(RPS), "--episodes", "2", "--summary", str(out), "--quiet"]) == 0
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 2
    assert set(summary["returns"]) == {"player_0", "player_1"}
    assert set(summary["messages"]) == {"published", "delivered", "rejected"}
    assert summary["messages"]["rejected"] == 0 and summary["wall_s"] > 0
    # The keys `--summary` has always written (llm only with LLM agents).
    assert {"scenario", "episodes", "returns", "success_rate", "steps", "wall_s", "per_episode",
            "messages", "incidents"} <= set(summary) and "llm" not in summary
    assert summary["incidents"] == {"late": 0, "failed": 0, "illegal": 0}


def test_run_shows_conversation_and_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(RPS), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "player_0 does:" in out and "mean return" in out and "episode 0" in out


def test_same_seed_records_same_envelopes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.jsonl"
        assert main(["run", str(RPS), "--seed", "7", "--record", str(path), "--quiet"]) == 0
        runs.append([comparable(e) for e in read_recording(path)])
    assert runs[0] == runs[1]
    assert len(runs[0]) > 20


def test_different_seed_records_differ(tmp_path: Path) -> None:
    runs = []
    for seed in ("1", "2"):
        path = tmp_path / f"{seed}.jsonl"
        assert main(["run", str(RPS), "--seed", seed, "--record", str(path), "--quiet"]) == 0
        runs.append([comparable(e) for e in read_recording(path)])
    assert runs[0] != runs[1]


def test_replay_shows_recorded_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    assert main(["run", str(RPS), "--record", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") == 3 and "player_1 does:" in out


def test_replay_of_broken_file_names_the_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    assert main(["run", str(RPS), "--record", str(path), "--quiet"]) == 0
    with path.open("a") as f:
        f.write("{not json\n")
    lines = path.read_text().count("\n")
    assert main(["replay", str(path)]) == 2
    assert f"{path}:{lines}: not an envelope" in capsys.readouterr().err
