"""The live terminal view: each agent's view, messages, actions, rewards and outcome."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocols import Observation
from runtime.cli import main
from runtime.console import numbers_summary, observation_summary
from runtime.envs import generic_text

ROOT = Path(__file__).parents[2]
RPS = ROOT / "scenarios" / "rps.yaml"
NOTES = """\
name: notes
seed: 1
episodes: 1
env:
  game: matrix
  options: {payoffs: {preset: prisoners_dilemma}, rounds: 2}
agents:
  player_0:
    type: scripted
    options:
      actions: [0, 1]
      messages: [{to: player_1, message: Note, payload: {text: "I cooperate first."}}]
  player_1: {type: scripted, options: {actions: [1]}}
protocol:
  messages: {Note: {fields: {text: {type: str, max_length: 40}}}}
  routes: [{from: player_0, to: player_1, message: Note}]
"""


@pytest.fixture
def notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: no line is wrapped
    path = tmp_path / "notes.yaml"
    path.write_text(NOTES)
    return path


def test_live_view_shows_what_each_agent_sees_says_and_does_and_the_outcome(
        notes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(notes)]) == 0
    out = capsys.readouterr().out
    assert "episode 0 · step 0" in out and "episode 0 · step 1" in out
    assert out.count("player_0 sees: ") == 2 and out.count("player_1 sees: ") == 2
    assert 'player_0 → player_1 [Note@1] {"text": "I cooperate first."}' in out
    assert "player_1 does: defect" in out.lower()
    assert out.count("rewards: player_0 ") == 2
    assert "episode 0 · 2 steps · returns player_0 +1.00, player_1 +6.00" in out
    assert "1 episode in " in out
    assert "envelopes on the bus: " in out and "{" not in out.splitlines()[-1]


def test_quiet_shows_results_only_and_verbose_adds_whole_views_and_options(
        notes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(notes), "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "sees:" not in quiet and "envelopes on the bus: " in quiet
    assert main(["run", str(notes), "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert "player_0 may: " in verbose and "sees:" in verbose


def test_quiet_and_verbose_together_are_refused(notes: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(notes), "--quiet", "--verbose"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_text_observations_are_shown_on_one_line_and_cut_to_length() -> None:
    long = Observation(text="Objects: red circle, blue square.\n\nPick one. " + "x" * 200,
                       action_names=["a"])
    short = observation_summary("listener", long)
    assert short.startswith("Objects: red circle, blue square. ⏎ Pick one. ")
    assert len(short) == 110 and short.endswith("…")
    assert observation_summary("listener", long, whole=True) == long.text.strip()


def test_numeric_observations_are_summarised_not_dumped() -> None:
    board = [[[0, 1], [0, 0], [1, 0]], [[0, 0], [0, 0], [0, 0]], [[0, 0], [0, 1], [0, 0]]]
    seen = Observation(text=generic_text("player_1", board), data=board, action_names=["a"])
    assert observation_summary("player_1", seen) == \
        "3x3x2 numbers in [0, 1], mean 0.167, 3 non-zero"
    assert numbers_summary([3]) == "[3]"


def test_library_warnings_stay_off_the_console_unless_debugging() -> None:
    code = ("import sys, warnings; from runtime.logs import configure_logging; "
            "configure_logging(sys.argv[1]); warnings.warn('old api', FutureWarning)")
    for level, shown in (("warning", False), ("debug", True)):
        done = subprocess.run([sys.executable, "-c", code, level], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0
        assert ("FutureWarning: old api" in done.stderr) is shown
