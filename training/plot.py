"""`parley plot`: the learning curves of one training run, drawn from its `metrics.csv`.

The ablation's table and figure across variants and seeds are `training.ablation`'s.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas rather than through
pyplot: no global backend switch, no figure registry to leak, safe in a headless run.
"""

from __future__ import annotations

import math
from pathlib import Path

import structlog
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.metrics import ITERATION, METRICS_FILE, read_metrics

log = structlog.get_logger()

PLOTS_DIR = "plots"

# (file stem, title, columns drawn on the same axes). Panels whose columns are all
# absent from the CSV are skipped.
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("return", "Mean return per episode", ("return_mean",)),
    ("success", "Success rate", ("success_rate",)),
    ("kl", "KL to the rollout policy", ("kl", "approx_kl")),
    ("value_loss", "Value loss", ("value_loss",)),
    ("explained_variance", "Critic's explained variance of the returns",
     ("explained_variance", "explained_variance_speak", "explained_variance_act")),
    ("critic_s", "Critic's time per iteration (s)", ("critic_s",)),
    ("social_s", "Writing the social summaries, per iteration (s)", ("social_s",)),
    ("shaping", "Reward shaping, per agent-step", ("shaping_bonus", "shaping_potential")),
    ("advantage_var", "Variance of the advantages", ("advantage_var",)),
    ("policy_loss", "Policy loss", ("policy_loss",)),
    ("entropy", "Entropy", ("entropy",)),
    ("clipfrac", "Clipped fraction", ("clipfrac",)),
    ("message_validity", "Valid messages", ("message_validity",)),
    ("message_chars", "Message length (characters)", ("message_chars",)),
    ("information", "What the messages carry (bits per message)",
     ("signalling_bits", "listening_bits")),
)
# Panels on a 0..1 scale: fixed limits make runs comparable at a glance.
_UNIT_SCALE = {"success", "message_validity", "clipfrac"}


def _series(rows: list[dict[str, float]], column: str) -> tuple[list[float], list[float]]:
    """(iterations, values) of the rows that have `column` (and a finite value in it)."""
    pairs = [
        (r[ITERATION], r[column])
        for r in rows
        if column in r and ITERATION in r and math.isfinite(r[column])
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _smoothed(values: list[float], window: int) -> list[float]:
    """Trailing moving average: the raw curve of a few episodes per iteration is noisy."""
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def _draw_panel(
    ax: Axes, rows: list[dict[str, float]], stem: str, title: str, columns: tuple[str, ...]
) -> None:
    window = max(1, len(rows) // 20)
    for index, column in enumerate(c for c in columns if any(c in r for r in rows)):
        xs, ys = _series(rows, column)
        colour = f"C{index}"
        if window > 1:
            ax.plot(xs, ys, color=colour, alpha=0.3, linewidth=0.8)
            label = f"{column} (mean of last {window})"
            ax.plot(xs, _smoothed(ys, window), color=colour, label=label)
        else:
            ax.plot(xs, ys, color=colour, marker=".", label=column)
    ax.set_title(title)
    ax.set_xlabel(ITERATION)
    if stem in _UNIT_SCALE:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def plot_run(out_dir: Path) -> list[Path]:
    """Draw the learning curves of one run from `out_dir/metrics.csv` into `out_dir/plots/`.

    Writes `learning_curves.png` (every panel whose metrics the CSV has, in a grid) and
    one PNG per panel (`return.png`, `success.png`, `kl.png`, ...). Missing metrics are
    skipped; a CSV without rows or without any known metric gives no figures.

    Returns:
        The PNG files written, the combined figure first.
    """
    rows = read_metrics(Path(out_dir) / METRICS_FILE)
    panels = [p for p in PANELS if any(c in r for r in rows for c in p[2])]
    if not panels:
        log.warning("plot_nothing_to_draw", out_dir=str(out_dir), rows=len(rows))
        return []
    plots = Path(out_dir) / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax, (stem, title, columns) in zip(axes, panels, strict=False):
        _draw_panel(ax, rows, stem, title, columns)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    written = [_save(fig, plots / "learning_curves.png")]
    for stem, title, columns in panels:
        single = Figure(figsize=(6, 4), layout="constrained")
        _draw_panel(single.subplots(), rows, stem, title, columns)
        written.append(_save(single, plots / f"{stem}.png"))
    log.info("plots_written", out_dir=str(plots), files=len(written))
    return written
