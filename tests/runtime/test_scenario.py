"""Scenario files: typed loading, and errors that say file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.scenario import load_scenario
from runtime.scenario_yaml import ScenarioError

SCENARIOS = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    scenario.registry()


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return caught.value.problems


def test_every_error_has_file_line_and_field(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
name: t
env:
  game: referential
  colour: red
agents:
  speaker:
    tpye: scripted
runtime:
  action_timeout_s: -1
""")
    path = tmp_path / "s.yaml"
    assert f"{path}:4: env.colour: Extra inputs are not permitted" in problems
    assert f"{path}:7: agents.speaker.tpye: Extra inputs are not permitted" in problems
    assert f"{path}:9: runtime.action_timeout_s: Input should be greater than 0" in problems
    assert len(problems) == 4  # and speaker.type is missing


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, "name: t\nenv: [unclosed\nagents: {}\n")
    assert "YAML syntax" in problem and ":3" in problem


def test_route_to_unknown_agent(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, """\
name: t
env: {game: referential}
agents: {speaker: {type: scripted}}
protocol:
  messages: {Hint: {fields: {text: {type: str}}}}
  routes: [{from: speaker, to: nobody, message: Hint}]
""")
    assert "route to unknown agent 'nobody'" in problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")


def test_routes_of_resolve_versions(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""\
name: t
env: {game: referential}
agents: {speaker: {type: scripted}, listener: {type: random}}
protocol:
  messages: {Hint: {version: 3, fields: {text: {type: str}}}}
  routes: [{from: speaker, to: listener, message: Hint}]
""")
    scenario = load_scenario(path)
    assert [(r.recipient, r.schema_id) for r in scenario.routes_of("speaker")] == [
        ("listener", "Hint@3")]
    assert scenario.allows("speaker", "listener", "Hint@3")
    assert not scenario.allows("listener", "speaker", "Hint@3")
