"""The message analysis of one recording: the channels' reports, a table and heatmaps.

`parley analyze messages` and `parley eval --messages` both end here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agents.base import WeighsActions
from protocols import Envelope
from runtime.play import build_agents
from runtime.play_settings import PlaySettings
from runtime.scenario import Scenario
from training.analysis.listening import causal_listening
from training.analysis.messages import ChannelReport, channels, exchanges, report
from training.trajectory import assemble

REPORT_FILE = "messages.json"
HEATMAP_MESSAGES = 24
"""Columns of a heatmap: the most frequent messages; the rest are summed into `other`."""


async def analyze_messages(envelopes: Sequence[Envelope],
                           recipients: Mapping[str, WeighsActions] | None = None,
                           ) -> list[ChannelReport]:
    """Each channel's report; with `recipients` (agents by name), causal listening too."""
    reports = []
    for channel in channels(exchanges(assemble(envelopes))).values():
        found = report(channel)
        recipient = (recipients or {}).get(found.recipient)
        if recipient is not None:
            found.causal_listening = await causal_listening(channel, recipient)
        reports.append(found)
    return reports


def listeners(scenario: Scenario, adapters: str | None, seed: int = 0
              ) -> dict[str, WeighsActions]:
    """The scenario's agents that can weigh their actions (LLM agents), with `adapters`."""
    settings = PlaySettings(episodes=0, seed=seed, adapters=adapters)
    names = list(scenario.agents)
    agents = build_agents(scenario, names, scenario.registry(), seed, settings)
    return {name: agent for name, agent in zip(names, agents, strict=True)
            if isinstance(agent, WeighsActions)}


def render_reports(reports: Sequence[ChannelReport]) -> str:
    """A few lines per channel for a terminal."""
    if not reports:
        return "no messages in this recording"
    lines = []
    for r in reports:
        ratio = "n/a" if r.signalling_ratio is None else f"{r.signalling_ratio:.2f}"
        lines += [
            f"{r.sender} -> {r.recipient} [{r.schema_id}]: {r.exchanges} messages, "
            f"{r.distinct_messages} distinct, {r.vocabulary} words, "
            f"{r.mean_length:.1f} characters on average",
            f"  H(meaning) {r.meaning_entropy:.3f} bits (from its {r.meanings_from}), "
            f"H(message) {r.message_entropy:.3f} bits",
            f"  signalling  I(meaning; message) {r.signalling:.3f} bits ({ratio} of H(meaning))",
            f"  listening   I(message; action) {_bits(r.listening)}, causal "
            f"{_figure(r.causal_listening)} (total variation, real vs shuffled message)",
            f"  topographic similarity {_figure(r.topographic_similarity)}",
        ]
    return "\n".join(lines)


def _bits(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} bits"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_analysis(reports: Sequence[ChannelReport], out: Path) -> list[Path]:
    """`messages.json` and one heatmap PNG per channel into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / REPORT_FILE
    summary.write_text(json.dumps([r.model_dump(mode="json", by_alias=True) for r in reports],
                                  indent=2) + "\n")
    written = [summary]
    for r in reports:
        path = out / f"messages_{r.sender}_{r.recipient}_{r.schema_id.replace('@', '_v')}.png"
        heatmap(r, path)
        written.append(path)
    return written


def heatmap(r: ChannelReport, path: Path) -> None:
    """Meaning (rows) x message (columns): the share of each meaning's messages."""
    totals: dict[str, int] = {}
    for counts in r.table.values():
        for message, count in counts.items():
            totals[message] = totals.get(message, 0) + count
    shown = sorted(totals, key=lambda m: (-totals[m], m))[:HEATMAP_MESSAGES]
    other = len(totals) > len(shown)
    columns = [*shown, "other"] if other else shown
    rows = list(r.table)
    shares = []
    for meaning in rows:
        counts = r.table[meaning]
        total = sum(counts.values())
        row = [counts.get(m, 0) / total for m in shown]
        shares.append([*row, 1.0 - sum(row)] if other else row)
    figure = Figure(figsize=(3.6 + 0.45 * len(columns), 2.0 + 0.35 * len(rows)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(columns)), [_short(c) for c in columns], rotation=60, ha="right")
    axes.set_yticks(range(len(rows)), [_short(m) for m in rows])
    axes.set_xlabel("message")
    axes.set_ylabel(f"{r.sender}'s meaning")
    axes.set_title(f"{r.sender} -> {r.recipient}: I = {r.signalling:.2f} of "
                   f"{r.meaning_entropy:.2f} bits", fontsize=10)
    figure.colorbar(image, ax=axes, label="share of its messages")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
