"""YAML to pydantic with line numbers: every error says file, line and field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from protocols import validation_issues

Model = TypeVar("Model", bound=BaseModel)
Path_ = tuple[str | int, ...]


class ScenarioError(ValueError):
    """A scenario that cannot be used; `problems` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    """Plain Python data from a composed node, recording each path's line (1-based)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            out[key] = _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line_of(loc: Path_, lines: dict[Path_, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def load_yaml_model(
    path: Path, model: type[Model], overrides: dict[str, Any] | None = None
) -> Model:
    """Parse `path` and validate it as `model`; raise ScenarioError naming every problem."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ScenarioError([f"{path}: cannot read: {error.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError([f"{where}: YAML syntax: {problem}"]) from None
    lines: dict[Path_, int] = {}
    data = _walk(node, (), lines) if node is not None else None
    if not isinstance(data, dict):
        raise ScenarioError([f"{path}:1: expected a mapping of scenario fields"])
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [f"{path}:{_line_of(loc, lines)}: "
                    f"{'.'.join(str(part) for part in loc) or '<scenario>'}: {message}"
                    for loc, message in validation_issues(error)]
        raise ScenarioError(problems) from None
