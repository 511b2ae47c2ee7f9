"""`parley ablate`: train and evaluate variants of a scenario over several seeds.

A variants file maps each variant's name to `--set` overrides of the scenario:

    variants:
      central critic: {}
      independent critic: {training.critic: independent}
      no critic: {training.critic: none}

Every (variant, seed) is one `parley train` then one `parley eval` in a child
process (`jobs` at a time, each with `threads` torch threads), so runs share
nothing and a crash costs one cell. A cell whose evaluation exists is skipped,
and a cell with checkpoints resumes: an interrupted ablation goes on where it
stopped. The result is OUT/ablation.md (a table of evaluation success per
variant, mean and standard deviation over seeds) and OUT/ablation.png (training
success per iteration, mean over seeds, one curve per variant).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.checkpoint import latest_checkpoint
from training.metrics import METRICS_FILE, read_metrics

log = structlog.get_logger()

EVAL_CONCURRENCY = 12  # evaluation episodes at once, batched in one engine per cell


@dataclass(frozen=True)
class Cell:
    """One training run of the ablation: a variant under one seed."""

    variant: str
    overrides: dict[str, Any]
    seed: int
    folder: Path

    @property
    def summary(self) -> Path:
        return self.folder / "eval.json"


def load_variants(path: Path) -> dict[str, dict[str, Any]]:
    """The `variants:` mapping of a variants file (name -> overrides)."""
    data = yaml.safe_load(path.read_text())
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"{path}: expected `variants:` mapping names to overrides")
    for name, overrides in variants.items():
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: variant {name!r}: overrides must be a mapping")
    return {str(name): dict(overrides or {}) for name, overrides in variants.items()}


def cells(variants: dict[str, dict[str, Any]], seeds: list[int], out: Path) -> list[Cell]:
    """Every (variant, seed), seed-major, so that partial results cover every variant."""
    return [Cell(name, overrides, seed, out / f"{_slug(name)}-seed{seed}")
            for seed in seeds for name, overrides in variants.items()]


def run_cell(cell: Cell, scenario: Path, iterations: int | None, episodes: int,
             threads: int) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell in child processes; its eval summary."""
    if not cell.summary.is_file():
        sets = {**cell.overrides, "training.seed": cell.seed, "training.threads": threads}
        args = [sys.executable, "-m", "runtime.cli", "train", str(scenario), "--no-progress"]
        args += ["--resume", str(cell.folder)] if latest_checkpoint(cell.folder) else \
            ["--out", str(cell.folder)]
        if iterations is not None:
            args += ["--iterations", str(iterations)]
        for key, value in sets.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        _child(args, cell.folder / "train.log", threads)
        _child([sys.executable, "-m", "runtime.cli", "eval", str(cell.folder / "scenario.yaml"),
                "--adapters", str(cell.folder / "adapters"), "--episodes", str(episodes),
                "--concurrency", str(EVAL_CONCURRENCY),
                "--summary", str(cell.summary)], cell.folder / "eval.log", threads)
    summary: dict[str, Any] = json.loads(cell.summary.read_text())
    log.info("ablation_cell_done", variant=cell.variant, seed=cell.seed,
             success_rate=summary.get("success_rate"))
    return summary


def _child(args: list[str], log_file: Path, threads: int) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with log_file.open("a") as sink:
        done = subprocess.run(args, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[3:5])} failed (exit {done.returncode}); see {log_file}")


def ablate(scenario: Path, variants: dict[str, dict[str, Any]], seeds: list[int], out: Path,
           iterations: int | None = None, episodes: int = 200, jobs: int = 1,
           threads: int = 1, threshold: float = 0.8) -> Path:
    """Run every cell (`jobs` at a time), then write OUT/ablation.md and OUT/ablation.png."""
    todo = cells(variants, seeds, out)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_cell, cell, scenario, iterations, episodes, threads)
                   for cell in todo]
        summaries = [future.result() for future in futures]
    table = render_table(todo, summaries, threshold)
    (out / "ablation.md").write_text(table)
    plot_ablation(todo, out / "ablation.png")
    return out / "ablation.md"


def render_table(todo: list[Cell], summaries: list[dict[str, Any]],
                 threshold: float = 0.8) -> str:
    """Markdown, a row per variant: evaluation success (mean ± sd over seeds, and each
    seed's), the iteration each seed first reached `threshold` training success, its
    training minutes, and the critic's mean explained variance over all its iterations."""
    by_variant: dict[str, list[tuple[Cell, float]]] = {}
    for cell, summary in zip(todo, summaries, strict=True):
        by_variant.setdefault(cell.variant, []).append((cell, float(summary["success_rate"])))
    episodes = summaries[0]["episodes"] if summaries else 0
    lines = [f"| variant | success ({episodes} eval episodes), mean ± sd | per seed | "
             f"iterations to {threshold:g} training success | training minutes | "
             "explained variance, mean |",
             "|---|---|---|---|---|---|"]
    for variant, results in by_variant.items():
        results.sort(key=lambda result: result[0].seed)
        rates = [rate for _, rate in results]
        spread = statistics.stdev(rates) if len(rates) > 1 else 0.0
        runs = [_training(cell.folder) for cell, _ in results]
        reached = ", ".join(_first_reaching(rows, threshold) for rows in runs)
        minutes = ", ".join(f"{sum(r.get('wall_s', 0.0) for r in rows) / 60:.1f}"
                            if rows else "-" for rows in runs)
        variance = [r["explained_variance"] for rows in runs for r in rows
                    if "explained_variance" in r and math.isfinite(r["explained_variance"])]
        lines.append(f"| {variant} | {statistics.fmean(rates):.2f} ± {spread:.2f} | "
                     f"{', '.join(f'{rate:.2f}' for rate in rates)} | {reached} | {minutes} | "
                     f"{f'{statistics.fmean(variance):.3f}' if variance else 'n/a'} |")
    return "\n".join(lines) + "\n"


def _training(folder: Path) -> list[dict[str, float]]:
    """A cell's training metrics, oldest iteration first (none if it never trained)."""
    return read_metrics(folder) if (folder / METRICS_FILE).is_file() else []


def _first_reaching(rows: list[dict[str, float]], threshold: float) -> str:
    """The first iteration (counted from 1) whose training success reached `threshold`."""
    if not rows:
        return "-"  # no training metrics (the cell never trained)
    for count, row in enumerate(rows, start=1):
        if row.get("success_rate", -1.0) >= threshold:
            return str(count)
    return "never"


def plot_ablation(todo: list[Cell], path: Path) -> None:
    """Training success per iteration, mean over seeds (band: min to max), per variant.

    Curves are cut to the variant's shortest seed, so every point is a mean over all of
    its seeds; a variant with no logged iteration is left out.
    """
    # A bare Figure on the Agg canvas, not pyplot: no global backend switch and no figure
    # registry to leak, as in training/plot.py.
    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for variant in dict.fromkeys(cell.variant for cell in todo):
        curves = [[row["success_rate"] for row in read_metrics(cell.folder)]
                  for cell in todo if cell.variant == variant]
        length = min(len(curve) for curve in curves)
        if length == 0:
            continue
        columns = [[curve[i] for curve in curves] for i in range(length)]
        axes.plot(range(1, length + 1), [statistics.fmean(c) for c in columns], label=variant)
        axes.fill_between(range(1, length + 1), [min(c) for c in columns],
                          [max(c) for c in columns], alpha=0.15)
    axes.set_xlabel("iteration")
    axes.set_ylabel("training success rate")
    axes.set_ylim(0, 1)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
