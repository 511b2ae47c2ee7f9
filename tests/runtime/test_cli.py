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
    assert summary["incidents"] == {"late": 0, "failed": 0, "illegal": 0, "offline": 0}


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
    assert out.count(" · returns ") == 3 and "player_1 does:" in out


def test_replay_of_broken_file_names_the_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    assert main(["run", str(RPS), "--record", str(path), "--quiet"]) == 0
    with path.open("a") as f:
        f.write("{not json\n")
    lines = path.read_text().count("\n")
    assert main(["replay", str(path)]) == 2
    assert f"{path}:{lines}: not an envelope" in capsys.readouterr().err


BASE = """\
name: t
env: {pettingzoo: pettingzoo.classic.rps_v2}
agents: {player_0: {type: random}, player_1: {type: random}}
"""
HINT = "protocol:\n  messages:\n    Hint: {fields: {text: {type: str, pattern: 'PATTERN'}}}\n"


@pytest.mark.parametrize(("text", "expected"), [
    (BASE + "? [a, b]\n: 1\n", ":4: a mapping key must be a plain value"),
    (BASE + "description: !foo x\n", ":4: unsupported YAML tag !foo"),
    (BASE + "description: &a\ntraining: *a\n", ":4: description: Input should be a valid "
     "string"),
    (BASE + "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", ":4: nesting deeper than 64"),
    (BASE + HINT.replace("PATTERN", "["), ":6: protocol.messages.Hint.fields.text.pattern: "
     "not a usable regex: unclosed character class"),
    (BASE + HINT.replace("PATTERN", "(?<=a)b"), ":6: protocol.messages.Hint.fields.text."
     "pattern: not a usable regex: look-around"),
    (BASE + "protocol: {messages: {Hint: {import: 'os:path'}}}\n",
     ":4: protocol.messages.Hint: 'os:path' is a module, not a pydantic model"),
    (BASE + "protocol: {messages: {Hint: {fields: {_x: {type: str}}}}}\n",
     ":4: protocol.messages.Hint.fields._x.[key]: field name '_x' may not start with '_'"),
    (BASE + "protocol: {messages: {Hint: {fields: {model_config: {type: str}}}}}\n",
     ":4: protocol.messages.Hint.fields.model_config.[key]: field name 'model_config'"),
    (BASE.replace("rps_v2}", "rps_v2:typo}"), ":2: env.pettingzoo: cannot import"),
    (BASE.replace("{type: random}}", "{type: nobody}}"), ":3: agents.player_1.type: unknown "
     "agent type 'nobody'"),
    (BASE.replace("rps_v2}", "rps_v2, options: {colour: red}}"), ":2: env.options: cannot "
     "build pettingzoo.classic.rps_v2: TypeError"),
])
def test_validate_refuses_bad_input_in_one_line_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path}{expected}"), line


@pytest.mark.parametrize(("option", "file"), [("--record", "run.jsonl"),
                                              ("--summary", "summary.json")])
def test_output_into_missing_folder_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        option: str, file: str) -> None:
    monkeypatch.setattr("runtime.cli.play", _no_play)
    target = tmp_path / "missing" / file
    assert main(["run", str(RPS), "--quiet", option, str(target)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {option} {target}: folder {tmp_path / 'missing'} does not exist"]


def _no_play(*args: object) -> None:
    raise AssertionError("the run started")


def test_output_onto_a_folder_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(RPS), "--quiet", "--summary", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_agent_process_on_memory_bus_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", str(RPS), "--agent", "player_0", "--bus", "memory"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --bus memory: an agent process needs a broker: use mqtt://HOST:PORT"]


def test_argument_errors_are_one_line_without_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["run"], ["run", str(RPS), "--episodes", "x"], ["nonsense"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: parley") and "usage" not in line


def _replay_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["replay", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line


def test_replay_of_folder_or_unreadable_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _replay_error(tmp_path, capsys) == f"error: {tmp_path}: cannot read: Is a directory"
    path = tmp_path / "run.jsonl"
    path.write_text("")

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")  # root reads any file: simulate it

    monkeypatch.setattr(Path, "open", denied)
    assert _replay_error(path, capsys) == f"error: {path}: cannot read: Permission denied"


def test_replay_of_bytes_that_are_not_text_names_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"\n\xff\xfe\n")
    assert _replay_error(path, capsys).startswith(f"error: {path}:2: not an envelope")


ENVELOPE = {"id": "e1", "run": "r", "episode": 0, "step": 0, "sender": "runner",
            "recipient": "all"}


@pytest.mark.parametrize(("kind", "schema", "payload", "expected"), [
    ("action", "Control@1", {"command": "stop"}, "kind 'action' does not fit a Control@1 "
     "payload (its kind is 'control')"),
    ("say", "Action@1", {"action": 1}, "kind 'say' does not fit a Action@1 payload (its "
     "kind is 'action')"),
    ("observation", "Hint@1", {"text": "x"}, "kind 'observation' does not fit a Hint@1 "
     "payload (its kind is 'say')"),
])
def test_replay_refuses_payload_that_does_not_fit_its_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, schema: str,
        payload: dict[str, object], expected: str) -> None:
    path = tmp_path / "run.jsonl"
    line = {**ENVELOPE, "kind": kind, "schema": schema, "payload": payload}
    path.write_text(json.dumps(line) + "\n")
    assert _replay_error(path, capsys) == f"error: {path}:1: not an envelope: envelope: {expected}"


def test_replay_shows_names_that_look_like_markup(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    end = {**ENVELOPE, "kind": "episode_end", "schema": "EpisodeEnd@1",
           "payload": {"returns": {"[/x]": 1.0}, "steps": 1}}
    path.write_text(json.dumps(end) + "\n")
    assert main(["replay", str(path)]) == 0
    assert "returns [/x] +1.00" in capsys.readouterr().out
