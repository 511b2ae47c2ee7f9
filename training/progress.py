"""One progress bar for long work (training iterations, cross-play pairings)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def status_bar(enabled: bool, label: str, total: int, start: int = 0
               ) -> Iterator[Callable[[str], None]]:
    """A rich bar of `total` steps; the callable advances it one step with a status line.
    Not `enabled`: the callable does nothing."""
    if not enabled:
        yield lambda status: None
        return
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns) as bar:
        task = bar.add_task(label, total=total, completed=start, status="")
        yield lambda status: bar.update(task, advance=1, status=status)
