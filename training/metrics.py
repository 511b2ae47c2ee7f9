"""Per-iteration training metrics: a CSV file (the record) and TensorBoard scalars (the view).

The CSV is the source of truth: `plot_run`, the ablation table and the README figures
read it, and it survives without TensorBoard. One row per iteration, one column per
metric; columns the trainer uses (others are welcome): iteration, episodes,
return_mean, success_rate, policy_loss, value_loss, entropy, kl, approx_kl, clipfrac,
message_validity, wall_s.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
import torch

from training.analysis.messages import information_metrics, message_text
from training.gae import explained_variance
from training.progress import status_bar
from training.rollout import Rollout
from training.trajectory import Trajectories
from training.update import Batch

log = structlog.get_logger()

METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
ITERATION = "iteration"

# The columns the trainer writes, in the order a reader wants them in the CSV.
STANDARD_COLUMNS = (
    ITERATION, "episodes", "return_mean", "success_rate", "policy_loss", "value_loss",
    "entropy", "kl", "approx_kl", "clipfrac", "message_validity", "wall_s",
)  # fmt: skip


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Read a metrics CSV; an empty cell (a metric absent from that row) is left out of the row.

    Args:
        path: the CSV file, or a run directory that holds `metrics.csv`.

    Returns:
        One dict per row, in file order.
    """
    path = path / METRICS_FILE if path.is_dir() else path
    with path.open(newline="") as f:
        return [
            {key: float(value) for key, value in row.items() if value not in ("", None)}
            for row in csv.DictReader(f)
        ]


def _cell(value: float) -> str:
    """Integers stay integers (iteration, episodes); floats keep every digit (repr round-trips)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _ordered(columns: set[str]) -> list[str]:
    """Standard columns first in their usual order, then the others alphabetically."""
    standard = [c for c in STANDARD_COLUMNS if c in columns]
    return standard + sorted(columns - set(STANDARD_COLUMNS))


class MetricsWriter:
    """Append one row of metrics per training iteration to `metrics.csv` and TensorBoard.

    Each row is flushed as it is written, so a crashed run keeps everything up to its
    last iteration. A row that brings a new metric rewrites the file with the union of
    the columns (earlier rows get empty cells), so the CSV always has one header.

    Resuming: `MetricsWriter(out_dir, start_iteration=k)` keeps the rows of iterations
    below k and drops the rest, so the iterations the resumed run repeats are not
    duplicated; TensorBoard hides its events from step k on (its `purge_step`). The
    default, 0, starts afresh.

    Example:
        with MetricsWriter(out_dir) as metrics:
            metrics.write(1, {"return_mean": 0.4, "success_rate": 0.5})
    """

    def __init__(self, out_dir: Path, tensorboard: bool = True, start_iteration: int = 0) -> None:
        """Open (or resume) the metrics of the run in `out_dir`; creates the directory."""
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / METRICS_FILE
        self.out_dir.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, float]] = []
        if self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get(ITERATION, -1) < start_iteration]
            log.info(
                "metrics_resumed",
                path=str(self.path),
                kept_rows=len(kept),
                start_iteration=start_iteration,
            )
        self._rows: list[dict[str, float]] = kept
        self._columns = _ordered({ITERATION}.union(*self._rows))
        self._file = self._rewrite()
        self._tensorboard = self._open_tensorboard(start_iteration) if tensorboard else None

    def _open_tensorboard(self, start_iteration: int) -> Any:
        # Imported here: tensorboard is slow to import and optional for a CSV-only writer.
        from torch.utils.tensorboard import SummaryWriter

        purge = start_iteration if start_iteration > 0 else None
        return SummaryWriter(log_dir=str(self.out_dir / TENSORBOARD_DIR), purge_step=purge)

    def _rewrite(self) -> Any:
        """Write header and rows to a temporary file, move it into place, reopen for appending."""
        temporary = self.path.with_suffix(".csv.tmp")
        with temporary.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in self._rows)
        temporary.replace(self.path)
        return self.path.open("a", newline="")

    def write(self, iteration: int, metrics: Mapping[str, float]) -> None:
        """Append the metrics of one iteration.

        Args:
            iteration: the training iteration (the x axis); also the TensorBoard step.
            metrics: metric name -> value; names need not be the same on every call.

        Raises:
            ValueError: if `metrics` carries an `iteration` that disagrees, or the writer is closed.
        """
        if self._file.closed:
            raise ValueError("MetricsWriter is closed")
        if ITERATION in metrics and metrics[ITERATION] != iteration:
            raise ValueError(f"metrics say iteration {metrics[ITERATION]}, write() got {iteration}")
        row = {**metrics, ITERATION: iteration}
        self._rows.append(row)
        if set(row) - set(self._columns):
            self._columns = _ordered(set(self._columns) | set(row))
            self._file.close()
            self._file = self._rewrite()
            if len(self._rows) > 1:
                log.debug("metrics_columns_added", columns=self._columns)
        else:
            csv.DictWriter(self._file, fieldnames=self._columns).writerow(
                {k: _cell(v) for k, v in row.items()}
            )
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in metrics.items():
                if name != ITERATION and not math.isnan(float(value)):
                    self._tensorboard.add_scalar(name, float(value), iteration)
            self._tensorboard.flush()

    def close(self) -> None:
        """Close the CSV file and the TensorBoard writer; closing twice is harmless."""
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def iteration_metrics(rollout: Rollout, trajectories: Trajectories, batch: Batch,
                      losses: dict[str, float]) -> dict[str, float]:
    """What the iteration came to: outcomes, losses, message validity, speed."""
    episodes = trajectories.episodes
    successes = [float(e.success) for e in episodes if e.success is not None]
    messages = rollout.valid + rollout.rejected
    # How far the update's recomputed log-probs are from the sampler's (0 unless recomputed).
    drift = (batch.old_logprobs - torch.tensor([d.rollout_logprob for d in batch.decisions],
                                               dtype=torch.float64)).abs()
    said = [message_text(env) for step in trajectories.steps for env in step.said]
    metrics = {
        "episodes": float(len(episodes)),
        "return_mean": statistics.fmean(statistics.fmean(e.returns.values()) for e in episodes)
        if episodes else math.nan,
        "success_rate": statistics.fmean(successes) if successes else math.nan,
        "message_validity": rollout.valid / messages if messages else math.nan,
        "message_chars": statistics.fmean(map(len, said)) if said else math.nan,
        "episodes_per_s": len(episodes) / rollout.wall_s if rollout.wall_s > 0 else math.nan,
        "rollout_s": rollout.wall_s,
        "decisions": float(len(batch.decisions)),
        "logprob_drift": float(drift.mean()) if len(drift) else 0.0,
        "advantage_var": float(batch.advantages.var()) if len(batch.advantages) > 1 else 0.0,
    }
    if batch.rows is not None:  # rows alternate: speak, act
        metrics |= {
            "explained_variance": explained_variance(batch.returns, batch.values),
            "explained_variance_speak": explained_variance(batch.returns[0::2],
                                                           batch.values[0::2]),
            "explained_variance_act": explained_variance(batch.returns[1::2],
                                                         batch.values[1::2])}
    metrics |= information_metrics(trajectories)
    # Without a reference pass (kl_coef 0) there is no KL to report.
    skip = {"total"} | ({"kl"} if batch.ref_logprobs is None else set())
    return metrics | {k: v for k, v in losses.items() if k not in skip}


@contextmanager
def progress_bar(enabled: bool, total: int, start: int
                 ) -> Iterator[Callable[[dict[str, float]], None]]:
    """A progress bar over iterations whose status line shows the latest metrics."""
    with status_bar(enabled, "train", total, start) as advance:
        yield lambda metrics: advance("  ".join(
            f"{key} {metrics[key]:.3g}" for key in
            ("success_rate", "return_mean", "entropy", "kl", "wall_s") if key in metrics))
