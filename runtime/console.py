"""The live view of a run for people in a terminal: the conversation and the results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from protocols import Envelope

_COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


class ConversationView:
    """Prints messages, actions and episode ends as they happen."""

    def __init__(self, console: Console | None = None, actions: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.show_actions = actions
        self._colours: dict[str, str] = {}
        self._action_names: dict[str, list[str]] = {}

    def _who(self, name: str) -> Text:
        colour = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
        return Text(name, style=f"bold {colour}")

    def show(self, envelope: Envelope) -> None:
        """Render one envelope, if it is something a person wants to see."""
        if envelope.kind == "observation":
            self._action_names[envelope.recipient] = list(envelope.payload["action_names"])  # type: ignore[arg-type]
        elif envelope.kind == "say":
            line = Text.assemble(self._who(envelope.sender), " → ", self._who(envelope.recipient),
                                 f" [{envelope.schema_id}] ",
                                 json.dumps(envelope.payload, ensure_ascii=False))
            self.console.print(line)
        elif envelope.kind == "action" and self.show_actions:
            action = int(envelope.payload["action"])  # type: ignore[arg-type]
            names = self._action_names.get(envelope.sender, [])
            label = names[action] if action < len(names) else str(action)
            self.console.print(Text.assemble(self._who(envelope.sender), f" does: {label}"),
                               style="dim")
        elif envelope.kind == "episode_end":
            returns = ", ".join(f"{a}={r:+.2f}" for a, r in envelope.payload["returns"].items())  # type: ignore[union-attr]
            success = envelope.payload.get("success")
            tail = "" if success is None else ("  success" if success else "  failure")
            self.console.rule(f"episode {envelope.episode} · {envelope.payload['steps']} steps · "
                              f"{returns}{tail}", style="dim")

    async def follow(self, stream: AsyncIterator[Envelope]) -> None:
        """Show a live stream until the runner says stop."""
        async for envelope in stream:
            self.show(envelope)
            if envelope.kind == "control" and envelope.payload.get("command") == "stop":
                return

    def replay(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            self.show(envelope)


def summary_table(summary: dict[str, object]) -> Table:
    """The per-agent results of a run as a table."""
    table = Table(title="results", show_edge=False)
    table.add_column("agent")
    table.add_column("mean return", justify="right")
    returns = summary["returns"]
    assert isinstance(returns, dict)
    for agent, value in returns.items():
        table.add_row(agent, f"{value:+.3f}")
    return table
