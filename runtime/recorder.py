"""Recording a run to JSONL and reading it back: the same envelopes the bus carried."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from protocols import Envelope, MalformedEnvelope, SchemaRegistry, decode
from runtime.scenario_yaml import printable


class Recording:
    """A tap that writes every envelope it sees to a JSONL file, one object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._out: IO[str] | None = None

    def __enter__(self) -> Self:
        try:
            self._out = self.path.open("w")
        except OSError as error:
            raise RecordingError(f"{self.path}: cannot write: {error.strerror or error}") from None
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._out is not None:
            self._out.close()

    def __call__(self, envelope: Envelope) -> None:
        assert self._out is not None, "use `with Recording(path) as recording:`"
        self._out.write(envelope.to_json().decode() + "\n")
        self.count += 1


class RecordingError(ValueError):
    """A recording that cannot be read, or a line of it that is not an envelope."""


def read_recording(path: Path, registry: SchemaRegistry | None = None) -> Iterator[Envelope]:
    """Envelopes of a recording, in order; RecordingError names the file and the bad line.

    Without the run's registry, the scenario's own messages are read unchecked
    (`SchemaRegistry.lenient`): enough to show them, not to trust them.
    """
    registry = registry or SchemaRegistry.lenient()
    try:
        lines = path.open("rb")  # bytes: a line that is not UTF-8 is a bad line, not a crash
    except OSError as error:
        raise RecordingError(f"{path}: cannot read: {error.strerror or error}") from None
    with lines:
        for number, line in enumerate(_lines(path, lines), start=1):
            if not line.strip():
                continue
            try:
                envelope = decode(line, registry)
            except MalformedEnvelope as error:
                # A field name in the line may hold line breaks: the error stays on one line.
                raise RecordingError(f"{path}:{number}: not an envelope: "
                                     f"{printable(str(error))}") from None
            yield envelope


def _lines(path: Path, lines: IO[bytes]) -> Iterator[bytes]:
    """The file's lines; a read that fails half-way (a folder, an I/O error) is a RecordingError."""
    try:
        yield from lines
    except OSError as error:
        raise RecordingError(f"{path}: cannot read: {error.strerror or error}") from None


def comparable(envelope: Envelope) -> dict[str, object]:
    """An envelope without what differs between identical runs (id, time)."""
    data = json.loads(envelope.to_json())
    data.pop("id", None)
    data.pop("time", None)
    return data  # type: ignore[no-any-return]
