"""Recording a run to JSONL and reading it back: the same envelopes the bus carried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from protocols import Envelope


async def record(stream: AsyncIterator[Envelope], path: Path) -> int:
    """Write every envelope of `stream` to `path`, one JSON object a line; returns the count."""
    count = 0
    with path.open("w") as out:
        async for envelope in stream:
            out.write(envelope.to_json().decode() + "\n")
            count += 1
            if envelope.kind == "control" and envelope.payload.get("command") == "stop":
                break
    return count


class RecordingError(ValueError):
    """A recording file with a line that is not an envelope."""


def read_recording(path: Path) -> Iterator[Envelope]:
    """Envelopes of a recording, in order; RecordingError names the bad line."""
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Envelope.model_validate_json(line)
            except ValueError as error:
                first = str(error).splitlines()[0]
                raise RecordingError(f"{path}:{number}: not an envelope: {first}") from None


def comparable(envelope: Envelope) -> dict[str, object]:
    """An envelope without what differs between identical runs (id, time)."""
    data = json.loads(envelope.to_json())
    data.pop("id", None)
    data.pop("time", None)
    return data  # type: ignore[no-any-return]
