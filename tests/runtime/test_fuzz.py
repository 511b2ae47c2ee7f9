"""Bounded fuzzing: no scenario file and no recording line ends in an unexpected exception.

Scenario documents are valid scenarios mutated (wrong types, unknown keys, odd strings,
deleted and renamed keys), valid YAML text with snippets spliced in (tags, anchors,
complex keys, brackets), and raw text or bytes. Loading one must either succeed or
raise ScenarioError whose every problem is one line that starts with the file's path.
Recording lines are valid envelopes mutated the same way (kinds and schemas swapped
too), spliced JSON, and raw bytes; replaying one must show it or raise RecordingError
whose message is one line that starts with the file's path (`parley replay` prints it
and exits with 2).

The suite runs a few hundred examples, the same ones every time. The acceptance-size
run, with fresh random examples:

    PARLEY_FUZZ_SCENARIOS=10000 PARLEY_FUZZ_RECORDINGS=5000 PARLEY_FUZZ_RANDOM=1 \\
        .venv/bin/pytest tests/runtime/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.cli import replay
from runtime.recorder import RecordingError
from runtime.scenario import load_scenario
from runtime.scenario_yaml import ScenarioError

FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=not os.environ.get("PARLEY_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCENARIO_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_SCENARIOS", "300"))
RECORDING_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_RECORDINGS", "200"))

HINT = {
    "version": 2, "description": "what the speaker says",
    "fields": {
        "text": {"type": "str", "min_length": 1, "max_length": 60, "pattern": "^[a-z ]+$"},
        "n": {"type": "int", "ge": 0, "le": 5},
        "p": {"type": "float", "ge": 0, "le": 1, "required": False, "default": 0.5},
        "ok": {"type": "bool"},
        "colour": {"type": "enum", "values": ["red", "blue"]},
        "tags": {"type": "list", "items": {"type": "str"}, "min_items": 0, "max_items": 3},
        "detail": {"type": "object", "fields": {"sure": {"type": "bool"}}},
    },
}
SCENARIOS: list[dict[str, Any]] = [
    {"name": "rps", "seed": 0, "episodes": 2,
     "env": {"pettingzoo": "pettingzoo.classic.rps_v2", "options": {"num_actions": 3}},
     "agents": {"player_0": {"type": "random"},
                "player_1": {"type": "scripted", "options": {"actions": [0, 1]}}}},
    {"name": "ref", "description": "referential",
     "env": {"game": "referential", "options": {"num_objects": 3}, "max_steps": 5},
     "agents": {"speaker": {"type": "llm", "options": {"temperature": 0.7}},
                "listener": {"type": "llm", "remote": True}},
     "model": {"name": "smollm2-135m-instruct", "device": "cpu"},
     "protocol": {"messages": {"Hint": HINT, "Offer": {"import": "protocols.messages:Reward"}},
                  "routes": [{"from": "speaker", "to": "listener", "message": "Hint"},
                             {"from": "listener", "to": "all", "message": "Offer"}]},
     "runtime": {"action_timeout_s": 5, "default_action": 0},
     "training": {"critic": "central"}},
]
GOOD_HINT = {"text": "red one", "n": 3, "ok": True, "colour": "red", "tags": ["a"],
             "detail": {"sure": False}}
_HEAD = {"id": "e1", "run": "ref", "episode": 0, "step": 1, "time": 1.5}
ENVELOPES: list[dict[str, Any]] = [
    {**_HEAD, "sender": "runner", "recipient": "speaker", "kind": "observation",
     "schema": "Observation@1", "payload": {"text": "objects", "data": [1, 2],
                                            "action_names": ["a", "b"],
                                            "action_mask": [True, False]}},
    {**_HEAD, "sender": "listener", "recipient": "runner", "kind": "action",
     "schema": "Action@1", "payload": {"action": 1},
     "trace": {"prompt_ids": [1], "token_ids": [2], "logprobs": [-0.1], "legal": [0, 1],
               "options": [[1], [2]]}},
    {**_HEAD, "sender": "speaker", "recipient": "listener", "kind": "say",
     "schema": "Hint@2", "payload": GOOD_HINT},
    {**_HEAD, "sender": "runner", "recipient": "listener", "kind": "reward",
     "schema": "Reward@1", "payload": {"reward": 1.0, "terminated": True}},
    {**_HEAD, "sender": "runner", "recipient": "all", "kind": "episode_end",
     "schema": "EpisodeEnd@1", "payload": {"returns": {"speaker": 1.0}, "steps": 1,
                                           "success": True}},
    {**_HEAD, "sender": "runner", "recipient": "all", "kind": "control",
     "schema": "Control@1", "payload": {"command": "stop"}},
]
ODD_STRINGS = [
    "", " ", "[", "(?=a)a", "(?<=a)b", "\\", "a{2,1}", "_x", "model_config", "model_dump",
    "json", "os:path", "nope.module:X", "protocols.messages:Action", "a:b:c",
    "pettingzoo.classic.rps_v2:typo", "all", "runner", "a/b", "#", "+", "Observation", "Hint",
    "str", "int", "enum", "list", "object", "llm", "scripted", "random", "x" * 300, "{agent}",
    "{nope}", "1e400", "-1", "\x00", "say", "action", "control", "Control@1", "Action@1",
    "Hint@2", "Hint@1", "Nope@1", "Hint@x", "[/x]", "é", "\U0001f600",
]
ODD_KEYS: st.SearchStrategy[Any] = st.sampled_from(
    ["extra", "_x", "model_config", "import", "fields", "pattern", "type", "options", "kind",
     "<<", 1, None, True, "id", "schema", "trace"]) | st.text(max_size=8)
JSON_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), st.floats(),
    st.text(max_size=20), st.sampled_from(ODD_STRINGS),
    st.lists(st.integers() | st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.sampled_from(ODD_STRINGS),
                    max_size=3),
)
YAML_VALUES = JSON_VALUES | st.binary(max_size=4) | st.dates()  # YAML also has !!binary, dates
YAML_SNIPPETS = [
    "!foo ", "!!binary ", "!!python/object:os.system ", "!!int ", "!!set ", "!!omap ", "&a ",
    "*a", "&a [*a]", "? ", "? [a, b]\n: 1\n", "<<: *a\n", "<<: [1]\n", "[" * 100, "{", "]",
    ":", "- ", "\t", "\x00", "\ufeff", "'", '"', "%YAML 1.1\n---\n", "---\n", "...\n", "|",
    ">-\n", "#", "@", "`",
]
JSON_SNIPPETS = ['"', "{", "}", "[", "]", ",", ":", "null", "1e400", "NaN", "\\u0000",
                 "\\ud800", "\x00", "\xff", "-", "0"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a nested document, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*prefix, index))
    return paths


def _mutate(draw: st.DrawFn, doc: Any, values: st.SearchStrategy[Any]) -> Any:
    """One edit at a random place: replace, delete, add a key or item, or rename a key."""
    path = draw(st.sampled_from(_paths(doc)))
    if not path:
        return draw(values)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    operation = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
    if operation == "replace":
        parent[key] = draw(values)
    elif operation == "delete":
        del parent[key]
    elif operation == "add" and isinstance(parent[key], list):
        parent[key].append(draw(values))
    elif operation == "add":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[draw(ODD_KEYS)] = draw(values)
    elif isinstance(parent, dict):
        parent[draw(ODD_KEYS)] = parent.pop(key)
    return doc


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]],
            values: st.SearchStrategy[Any]) -> Any:
    """A template with one to three edits."""
    doc: Any = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(1, 3))):
        doc = _mutate(draw, doc, values)
    return doc


@st.composite
def spliced(draw: st.DrawFn, texts: list[str], snippets: list[str]) -> str:
    """A valid text with up to three snippets inserted (and a few characters cut) anywhere."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 5))
        text = text[:at] + draw(st.sampled_from(snippets) | st.text(max_size=4)) + text[at + cut:]
    return text


def _yaml(doc: Any, unicode: bool) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=unicode)


SCENARIO_DOCUMENTS = st.one_of(
    st.builds(_yaml, mutated(SCENARIOS, YAML_VALUES), st.booleans()).map(str.encode),
    spliced([_yaml(s, False) for s in SCENARIOS], YAML_SNIPPETS).map(str.encode),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
)
RECORDING_LINES = st.one_of(
    st.builds(json.dumps, mutated(ENVELOPES, JSON_VALUES)).map(str.encode),
    spliced([json.dumps(e) for e in ENVELOPES], JSON_SNIPPETS).map(str.encode),
    st.text(max_size=120).map(str.encode),
    st.binary(max_size=120),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def hint_scenario(folder: Path) -> Path:
    """A scenario that declares Hint@2, for replays that check say payloads."""
    path = folder / "scenario.yaml"
    path.write_text(_yaml(SCENARIOS[1], False))
    return path


@settings(FUZZ, max_examples=SCENARIO_EXAMPLES)
@given(document=SCENARIO_DOCUMENTS)
def test_scenario_loading_succeeds_or_names_file_and_line(folder: Path, document: bytes) -> None:
    path = folder / "fuzzed.yaml"
    path.write_bytes(document)
    try:
        load_scenario(path).registry()
    except ScenarioError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.startswith(f"{path}:") and problem.isprintable(), problem


@settings(FUZZ, max_examples=RECORDING_EXAMPLES)
@given(line=RECORDING_LINES, after_good_line=st.booleans(), checked=st.booleans())
def test_replay_shows_a_line_or_names_file_and_line(folder: Path, hint_scenario: Path,
                                                    line: bytes, after_good_line: bool,
                                                    checked: bool) -> None:
    path = folder / "fuzzed.jsonl"
    good = json.dumps(ENVELOPES[2]).encode() + b"\n" if after_good_line else b""
    path.write_bytes(good + line + b"\n")
    try:
        with redirect_stdout(io.StringIO()):
            replay(path, hint_scenario if checked else None)
    except RecordingError as error:
        assert str(error).startswith(f"{path}:") and str(error).isprintable(), str(error)
