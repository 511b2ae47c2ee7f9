"""The live view of a run for people in a terminal: what each agent sees, says and does.

Per step: a short form of each agent's observation (the text it reads; a compact
summary of the numbers for envs that give only numbers), each message with sender,
recipient and schema, each action by name, the step's rewards, and each episode's
outcome. `verbose` shows observations whole and each agent's options.
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import fmean

from pydantic import JsonValue
from rich.console import Console
from rich.table import Table
from rich.text import Text

from protocols import Action, Envelope, EpisodeEnd, Observation, Reward
from runtime.envs import generic_text
from runtime.summary import RunSummary

_COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "red"]
SHORT = 110
"""Characters of an observation shown when not verbose."""


class ConversationView:
    """Prints each step as it happens (a tap of the run), or a recording's (`replay`)."""

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or Console(highlight=False, markup=False)
        self.verbose = verbose
        self._colours: dict[str, str] = {}
        self._action_names: dict[str, list[str]] = {}
        self._choices: dict[str, int] = {}
        self._step: tuple[str, int, int] | None = None
        self._rewards: dict[str, float] = {}

    def __call__(self, envelope: Envelope) -> None:
        """Render one envelope, if it is something a person wants to see."""
        if not isinstance(envelope.payload, Reward | EpisodeEnd):
            self._flush_rewards()
        if envelope.kind == "say":
            self._line(self._who(envelope.sender), " → ", self._who(envelope.recipient),
                       (f" [{envelope.schema_id}] ", "dim"), envelope.payload_json())
            return
        match envelope.payload:
            case Observation() as observation:
                self._observed(envelope, observation)
            case Action(action=action) if self._choices.get(envelope.sender) != 1 or self.verbose:
                label = action_label(self._action_names.get(envelope.sender, []), action)
                self._line(self._who(envelope.sender), " does: ", (label, "bold"))
            case Reward(reward=reward):
                self._rewards[envelope.recipient] = reward
            case EpisodeEnd() as end:
                self._flush_rewards()
                self._episode_end(envelope.episode, end)

    def replay(self, envelopes: Iterable[Envelope]) -> None:
        """Show a recorded run as it was shown live."""
        for envelope in envelopes:
            self(envelope)
        self._flush_rewards()

    def _observed(self, envelope: Envelope, observation: Observation) -> None:
        agent = envelope.recipient
        self._action_names[agent] = observation.action_names
        self._choices[agent] = len(observation.legal_actions)  # one: no choice worth showing
        step = (envelope.run, envelope.episode, envelope.step)
        if step != self._step:
            self._step = step
            self.console.print(Text(f"episode {envelope.episode} · step {envelope.step}",
                                    style="bold dim"))
        seen = observation_summary(agent, observation, whole=self.verbose)
        self._line(self._who(agent), " sees: ", (seen, "italic"))
        if self.verbose:
            legal = [observation.action_names[i] for i in observation.legal_actions]
            self._line("   ", self._who(agent), " may: ", (" | ".join(legal), "dim"))

    def _flush_rewards(self) -> None:
        if self._rewards:
            shown = ", ".join(f"{agent} {reward:+.2f}" for agent, reward in self._rewards.items())
            self._line(("   rewards: ", "dim"), shown)
            self._rewards = {}

    def _episode_end(self, episode: int, end: EpisodeEnd) -> None:
        shown = ", ".join(f"{agent} {value:+.2f}" for agent, value in end.returns.items())
        outcome = "" if end.success is None else (" · success" if end.success else " · failure")
        steps = f"{end.steps} step{'' if end.steps == 1 else 's'}"
        # Text, not a markup string: agent names may hold brackets.
        self.console.rule(Text(f"episode {episode} · {steps} · returns {shown}{outcome}"),
                          style="green" if end.success else "dim")

    def _who(self, name: str) -> Text:
        colour = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
        return Text(name, style=f"bold {colour}")

    def _line(self, *parts: str | Text | tuple[str, str]) -> None:
        self.console.print(Text.assemble(*parts))


def action_label(names: list[str], action: int) -> str:
    """An action by the name its agent's last observation gave it (its index if none)."""
    return names[action] if action < len(names) else f"action {action}"


def observation_summary(agent: str, observation: Observation, whole: bool = False) -> str:
    """What the agent sees, in short: its text on one line, or for an env that gives only
    numbers, their shape and range. `whole` keeps the text as it is."""
    if observation.text != generic_text(agent, observation.data):
        text = observation.text.strip()
        if whole:
            return text
        line = " ⏎ ".join(part.strip() for part in text.splitlines() if part.strip())
        return line if len(line) <= SHORT else line[:SHORT - 1] + "…"
    return numbers_summary(observation.data)


def numbers_summary(data: JsonValue) -> str:
    """A compact summary of a numeric observation: its shape, range, mean and non-zeros."""
    flat = list(_numbers(data))
    if not flat:
        return "no numbers"
    if len(flat) <= 6:
        return "[" + ", ".join(f"{x:g}" for x in flat) + "]"
    nonzero = sum(1 for x in flat if x != 0)
    return (f"{'x'.join(map(str, _shape(data)))} numbers in [{min(flat):g}, {max(flat):g}], "
            f"mean {fmean(flat):.3g}, {nonzero} non-zero")


def _numbers(data: JsonValue) -> Iterable[float]:
    if isinstance(data, int | float):  # bool is an int
        yield float(data)
    elif isinstance(data, list):
        for item in data:
            yield from _numbers(item)
    elif isinstance(data, dict):
        for item in data.values():
            yield from _numbers(item)


def _shape(data: JsonValue) -> list[int]:
    """The dimensions of nested lists (the first element's, level by level)."""
    shape = []
    while isinstance(data, list) and data:
        shape.append(len(data))
        data = data[0]
    return shape or [len(list(_numbers(data)))]


def summary_table(summary: RunSummary) -> Table:
    """The per-agent results of a run as a table."""
    table = Table(title="results", show_edge=False)
    table.add_column("agent")
    table.add_column("mean return", justify="right")
    for agent, value in summary.returns.items():
        table.add_row(agent, f"{value:+.3f}")
    return table


def summary_lines(summary: RunSummary) -> list[str]:
    """The run's outcome and counts, as people read them."""
    episodes = f"{summary.episodes} episode{'' if summary.episodes == 1 else 's'}"
    lines = [f"{episodes} in {summary.wall_s:.1f} s"
             + ("" if summary.success_rate is None
                else f"; success {summary.success_rate:.0%}")]
    counts = summary.messages
    lines.append(f"envelopes on the bus: {counts.published} published, {counts.delivered} "
                 f"delivered, {counts.rejected} rejected")
    if summary.llm is not None:
        llm = summary.llm
        lines.append(f"model calls: {llm.calls}, {llm.valid} valid messages, "
                     f"{llm.reasked} re-asked, {llm.rejected} rejected")
    incidents = summary.incidents
    late, failed, illegal, offline = (incidents.late, incidents.failed, incidents.illegal,
                                      incidents.offline)
    if late or failed or illegal or offline:
        lines.append(f"default actions played: {late} late, {failed} failed, "
                     f"{illegal} illegal, {offline} offline")
    return lines
