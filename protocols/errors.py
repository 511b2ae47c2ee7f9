"""One way to turn a pydantic ValidationError into lines people can read."""

from __future__ import annotations

from pydantic import ValidationError

Location = tuple[str | int, ...]


def validation_issues(error: ValidationError) -> list[tuple[Location, str]]:
    """Each problem as (location, message), without pydantic's internal location parts."""
    issues = []
    for item in error.errors():
        location = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        issues.append((location, item["msg"].removeprefix("Value error, ")))
    return issues


def describe(error: ValidationError, root: str = "<root>", limit: int | None = None) -> str:
    """The problems as `field.path: message`, joined by `; ` (the first `limit` only).

    A problem of the whole object is named `root`; with `root=""`, by its message alone.
    """
    lines = []
    for where, message in validation_issues(error)[:limit]:
        field = ".".join(str(part) for part in where) or root
        lines.append(f"{field}: {message}" if field else message)
    return "; ".join(lines)
