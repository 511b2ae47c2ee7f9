"""The live view of a run for people in a terminal: the conversation and the results."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from protocols import Action, Envelope, EpisodeEnd, Observation
from runtime.summary import RunSummary

_COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


class ConversationView:
    """Prints messages, actions and episode ends as they happen (a tap of the run)."""

    def __init__(self, console: Console | None = None, actions: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.show_actions = actions
        self._colours: dict[str, str] = {}
        self._action_names: dict[str, list[str]] = {}

    def _who(self, name: str) -> Text:
        colour = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
        return Text(name, style=f"bold {colour}")

    def __call__(self, envelope: Envelope) -> None:
        """Render one envelope, if it is something a person wants to see."""
        if envelope.kind == "say":
            text = envelope.payload_json()
            self.console.print(Text.assemble(self._who(envelope.sender), " → ",
                                             self._who(envelope.recipient),
                                             f" [{envelope.schema_id}] ", text))
            return
        match envelope.payload:
            case Observation(action_names=names):
                self._action_names[envelope.recipient] = names
            case Action(action=action) if self.show_actions:
                names = self._action_names.get(envelope.sender, [])
                label = names[action] if action < len(names) else str(action)
                self.console.print(Text.assemble(self._who(envelope.sender), f" does: {label}"),
                                   style="dim")
            case EpisodeEnd(returns=returns, steps=steps, success=success):
                shown = ", ".join(f"{a}={r:+.2f}" for a, r in returns.items())
                tail = "" if success is None else ("  success" if success else "  failure")
                # Text, not a markup string: agent names may hold brackets.
                self.console.rule(Text(f"episode {envelope.episode} · {steps} steps · "
                                       f"{shown}{tail}"), style="dim")

    def replay(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            self(envelope)


def summary_table(summary: RunSummary) -> Table:
    """The per-agent results of a run as a table."""
    table = Table(title="results", show_edge=False)
    table.add_column("agent")
    table.add_column("mean return", justify="right")
    for agent, value in summary.returns.items():
        table.add_row(agent, f"{value:+.3f}")
    return table
