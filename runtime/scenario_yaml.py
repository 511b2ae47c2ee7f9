"""YAML to pydantic with line numbers: every error says file, line and field path.

Scenario files are JSON-like data, so only plain YAML is read: mappings with scalar
keys, sequences, and the standard scalar types. Anything else (a `!tag`, a complex
key, nesting deeper than any scenario needs, aliases that expand without bound) is a
one-line error with its line, never an exception from the YAML library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor

from protocols import validation_issues

Model = TypeVar("Model", bound=BaseModel)
Path_ = tuple[str | int, ...]

MAX_DEPTH = 64
"""Deepest nesting read; real scenarios use under 10, and deeper input would exhaust
Python's recursion limit in PyYAML's composer or in validation."""
MAX_VALUES = 100_000
"""Most values a document may expand to: aliases can make a small file expand
exponentially ("billion laughs")."""

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_YAML}{name}" for name in
                ("null", "bool", "int", "float", "str", "binary", "timestamp")}

_IMPLICIT = {tag: pattern for resolvers in yaml.SafeLoader.yaml_implicit_resolvers.values()
             for tag, pattern in resolvers}
"""How YAML recognises a plain null, bool, int, float or timestamp."""


class ScenarioError(ValueError):
    """A scenario that cannot be used; `problems` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        # Field names and values quoted in a problem may hold line breaks: escape them.
        self.problems = [printable(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Source:
    """Where a loaded model came from: its file and the line of each field path."""

    path: Path
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, loc: Path_) -> int:
        """The line of `loc`, else of its nearest ancestor that has one (1 at worst)."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def where(self, loc: Path_) -> str:
        """`FILE:LINE: field.path`, the prefix of every problem with a field."""
        return f"{self.path}:{self.line(loc)}: {dotted(loc)}"


def printable(text: str) -> str:
    """`text` on one line: line breaks and other control characters escaped (`\\n`)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def failure(error: BaseException) -> str:
    """An exception of plug-in or third-party code as one problem: its type and message."""
    return printable(f"{type(error).__name__}: {' '.join(str(error).split())}")


def dotted(loc: Path_) -> str:
    """A field path as `a.b.0`; a key with spaces at its ends or control characters quoted."""
    parts = [repr(part) if isinstance(part, str) and (not part or part.strip() != part
                                                      or not part.isprintable()) else str(part)
             for part in loc]
    return ".".join(parts) or "<scenario>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


class _Reader:
    """Plain Python data from a composed node, recording each path's line (1-based)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[Path_, int] = {}
        self._values = 0
        self._constructor = SafeConstructor()

    def _fail(self, node: yaml.Node, what: str) -> ScenarioError:
        return ScenarioError([f"{self.path}:{node.start_mark.line + 1}: {what}"])

    def read(self, node: yaml.Node, path: Path_ = (), depth: int = 0) -> Any:
        self._values += 1
        if self._values > MAX_VALUES:
            raise self._fail(node, f"the document expands to more than {MAX_VALUES} values "
                             "(through aliases?)")
        if depth > MAX_DEPTH:  # also stops an alias that contains itself
            raise self._fail(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode) and node.tag == f"{_YAML}map":
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode) and node.tag == f"{_YAML}seq":
            return [self.read(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
            return self._scalar(node)
        raise self._fail(node, f"unsupported YAML tag {_tag(node.tag)} (plain values only)")

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[Any, Any]:
        try:
            self._constructor.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        except yaml.YAMLError as error:
            raise self._fail(node, _one_line(str(getattr(error, "problem", error)))) from None
        except RecursionError:
            raise self._fail(node, "a merge key that includes itself") from None
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag in _SCALAR_TAGS):
                raise self._fail(key_node, "a mapping key must be a plain value (a name)")
            key = self._scalar(key_node)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.read(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        # An explicit `!!int abc` skips YAML's own recognition of ints, and PyYAML's
        # constructors then fail every which way (ValueError, IndexError, KeyError, ...):
        # check the text as YAML would have recognised it.
        pattern = _IMPLICIT.get(node.tag)
        if pattern is not None and not pattern.match(node.value):
            raise self._fail(node, f"{node.value!r} is not a valid {_tag(node.tag)}")
        try:
            return self._constructor.construct_object(node)
        except yaml.YAMLError:  # !!binary that is not base64
            raise self._fail(node, f"{node.value!r} is not a valid {_tag(node.tag)}") from None


def _check_depth(path: Path, text: str) -> None:
    """Refuse deep nesting before composing: PyYAML's composer recurses per level."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise ScenarioError([f"{path}:{line}: nesting deeper than {MAX_DEPTH} levels"])
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _syntax_error(path: Path, text: str, error: yaml.YAMLError) -> ScenarioError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        where = f"{path}:{mark.line + 1}"
    elif isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        where = f"{path}:{text.count(chr(10), 0, error.position) + 1}"
        problem = str(error).splitlines()[0]  # its other line gives the position, not the line
    else:
        where = str(path)
    return ScenarioError([f"{where}: YAML syntax: {_one_line(problem)}"])


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ScenarioError([f"{path}: cannot read: {error.strerror or error}"]) from None
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ScenarioError([f"{path}:{line}: not UTF-8 text ({error.reason})"]) from None


def read_yaml(path: Path) -> tuple[Any, Source]:
    """The plain data of a YAML file and where each of its values is."""
    text = _read_text(path)
    try:
        _check_depth(path, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise _syntax_error(path, text, error) from None
    reader = _Reader(path)
    data = reader.read(node) if node is not None else None
    return data, Source(path, reader.lines)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply one override (`--set a.b=value`); ScenarioError if a parent is not a mapping."""
    *parents, leaf = dotted.split(".")
    for depth, part in enumerate(parents):
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            above = ".".join(parents[:depth + 1])
            raise ScenarioError([f"--set {dotted}: {above} is not a mapping"])
    data[leaf] = value


def load_yaml_model(
    path: Path, model: type[Model], overrides: dict[str, Any] | None = None
) -> Model:
    """Parse `path` and validate it as `model`; raise ScenarioError naming every problem.

    The model is validated with the context `{"source": Source}`, so that it may keep
    where its fields came from (the Scenario does, for errors found after loading).
    """
    data, source = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError([f"{path}:1: expected a mapping of scenario fields"])
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value)
    try:
        return model.model_validate(data, context={"source": source})
    except ValidationError as error:
        raise ScenarioError([f"{source.where(loc)}: {message}"
                             for loc, message in validation_issues(error)]) from None
