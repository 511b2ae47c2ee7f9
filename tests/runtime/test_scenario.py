"""Scenario files: typed loading, and errors that say file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.preflight import preflight
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


RPS = """\
name: t
env: {pettingzoo: pettingzoo.classic.rps_v2}
agents: {player_0: {type: random}, player_1: {type: random}}
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("? [a, b]\n: 1\n", ":4: a mapping key must be a plain value"),
    ("description: !foo x\n", ":4: unsupported YAML tag !foo"),
    ("description: !!python/object:os.system x\n", ":4: unsupported YAML tag"),
    ("seed: !!int abc\n", ":4: 'abc' is not a valid !!int"),
    ("description: &a\nseed: *a\n", ":4: description: Input should be a valid string"),
    ("description: " + "[" * 3000 + "]" * 3000 + "\n", ":4: nesting deeper than 64 levels"),
    ("training: &a {x: [*a]}\n", ":4: nesting deeper than 64 levels"),
    ("description: \x00\n", ":4: YAML syntax: unacceptable character #x0000"),
])
def test_yaml_beyond_plain_data_is_one_line_with_its_line(tmp_path: Path, extra: str,
                                                          expected: str) -> None:
    problems = _problems(tmp_path, RPS + extra)
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith(f"{tmp_path / 's.yaml'}:") and "\n" not in problem
               for problem in problems)


def test_aliases_that_expand_without_bound_are_refused(tmp_path: Path) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (problem,) = _problems(tmp_path, RPS + "training:\n" + "".join(
        f"  {line}\n" for line in laughs))
    assert "expands to more than 100000 values" in problem


def test_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(RPS.replace("agents: {player_0: {type: random}, player_1: {type: random}}",
                                "agents:\n  player_0: &r {type: random}\n"
                                "  player_1: {<<: *r, remote: true}"))
    scenario = load_scenario(path)
    assert scenario.agents["player_1"].type == "random" and scenario.agents["player_1"].remote


def test_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(RPS.encode() + b"description: \xff\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.problems == [f"{path}:4: not UTF-8 text (invalid start byte)"]


def test_override_below_a_value_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(RPS)
    with pytest.raises(ScenarioError, match=r"--set name\.x: name is not a mapping"):
        load_scenario(path, {"name.x": 1})


@pytest.mark.parametrize(("names", "expected"), [
    ("agents: {runner: {type: random}}", "agent name 'runner' is reserved"),
    ("agents: {a/b: {type: random}}", "without / # + or NUL"),
    ("protocol: {messages: {Observation: {fields: {x: {type: int}}}}}",
     "message name 'Observation' is a built-in message"),
    ("protocol: {messages: {'my hint': {fields: {x: {type: int}}}}}",
     "message name 'my hint' must start with a letter"),
])
def test_names_that_cannot_travel_in_envelopes_are_refused(tmp_path: Path, names: str,
                                                           expected: str) -> None:
    problems = _problems(tmp_path, RPS.replace(
        "agents: {player_0: {type: random}, player_1: {type: random}}",
        "agents: {player_0: {type: random}, player_1: {type: random}}\n" + names))
    assert any(expected in problem for problem in problems), problems


def test_scenario_knows_the_line_of_each_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(RPS)
    scenario = load_scenario(path)
    assert scenario.where("env", "pettingzoo") == f"{path}:2: env.pettingzoo"
    assert scenario.where("agents", "player_1") == f"{path}:3: agents.player_1"


def broken_env(**options: object) -> None:
    """An env constructor whose optional dependency is missing (as hanabi without shimmy)."""
    raise ImportError("needs shimmy; pip install shimmy")


def _preflight_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        preflight(load_scenario(path))
    return caught.value.problems


@pytest.mark.parametrize(("change", "expected"), [
    (("pettingzoo.classic.rps_v2}", "pettingzoo.classic.rps_v2:typo}"),
     ":2: env.pettingzoo: cannot import 'pettingzoo.classic.rps_v2:typo'"),
    (("pettingzoo.classic.rps_v2}", f"'{__name__}:broken_env'}}"),
     ":2: env.pettingzoo: cannot build tests.runtime.test_scenario:broken_env: ImportError: "
     "needs shimmy; pip install shimmy"),
    (("rps_v2}", "rps_v2, options: {num_actions: x}}"), ":2: env.options: cannot build"),
    (("player_1: {type: random}", "player_1: {type: nope}"),
     ":3: agents.player_1.type: unknown agent type 'nope'"),
    (("player_1: {type: random}", "player_1: {type: llm, options: {temperature: -1}}"),
     ":3: agents.player_1.options: agent 'player_1' (llm) options: temperature"),
    (("player_1", "player_9"), ":3: agents: agents in the scenario and the env differ"),
])
def test_preflight_builds_env_and_agents_as_a_run_would(tmp_path: Path,
                                                        change: tuple[str, str],
                                                        expected: str) -> None:
    problems = _preflight_problems(tmp_path, RPS.replace(*change))
    assert any(problem.startswith(f"{tmp_path / 's.yaml'}{expected}") for problem in problems), \
        problems


def test_preflight_builds_llm_agents_without_loading_a_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.llm.agent

    def no_model(*args: object) -> None:
        raise AssertionError("preflight loaded a language model")

    monkeypatch.setattr(agents.llm.agent, "get_engine", no_model)
    preflight(load_scenario(Path(__file__).parents[2] / "scenarios" / "referential.yaml"))


def test_preflight_leaves_remote_agents_to_their_own_host(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(RPS.replace("player_1: {type: random}",
                                "player_1: {type: only_on_its_host:Agent, remote: true}"))
    preflight(load_scenario(path))
    with pytest.raises(ScenarioError, match=r"agents\.player_1\.type: agent type: cannot import"):
        preflight(load_scenario(path), serve="player_1")


def test_preflight_reports_an_agent_module_that_fails_on_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(tmp_path)
    package = tmp_path / "broken_agents_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('half-written plug-in')\n")
    problems = _preflight_problems(tmp_path, RPS.replace(
        "player_1: {type: random}", "player_1: {type: broken_agents_pkg:Agent}"))
    assert problems == [f"{tmp_path / 's.yaml'}:3: agents.player_1.type: cannot load "
                        "broken_agents_pkg:Agent: RuntimeError: half-written plug-in"]
