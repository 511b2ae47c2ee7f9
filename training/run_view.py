"""A training run for people: sampled episodes of each iteration, and `parley view RUN_DIR`.

The trainer writes the first `SAMPLED` episodes of every rollout to
OUT/episodes/iteration_NNNN.jsonl (a recording, as `parley run --record` writes); the
page shows the learning curves from OUT/metrics.csv and those episodes, an iteration
at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocols import Envelope, SchemaRegistry
from runtime.recorder import Recording, read_recording
from runtime.viewer import episodes_data, render_page, run_summary
from training.metrics import read_metrics

SAMPLED = 2
"""Episodes of each rollout kept for the view."""
EPISODES = "episodes"
CURVES = ("success_rate", "return_mean", "explained_variance", "policy_loss", "value_loss",
          "entropy", "approx_kl", "message_validity", "wall_s")
"""The metrics drawn, where the run has them."""


def record_sampled_episodes(out: Path, iteration: int, envelopes: Sequence[Envelope]) -> Path:
    """Write the rollout's first `SAMPLED` episodes to OUT/episodes/iteration_NNNN.jsonl."""
    folder = out / EPISODES
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"iteration_{iteration:04d}.jsonl"
    with Recording(path) as recording:
        for envelope in envelopes:
            if envelope.episode < SAMPLED:
                recording(envelope)
    return path


def run_page(run: Path, registry: SchemaRegistry | None = None) -> str:
    """The page of a training run: its curves and each iteration's sampled episodes."""
    rows = read_metrics(run)
    sampled = {int(path.stem.removeprefix("iteration_")):
               episodes_data(read_recording(path, registry), checked=registry is not None)
               for path in sorted((run / EPISODES).glob("iteration_*.jsonl"))}
    iterations = [{"iteration": i, "episodes": episodes} for i, episodes in sampled.items()]
    latest = sampled[max(sampled)] if sampled else []
    last = _finite(rows[-1], "success_rate") if rows else None
    summary = run_summary(latest) | {"episodes": len(rows), "success_rate": last}
    return render_page(f"training run {run.name}", {
        "kind": "training", "summary": summary, "iterations": iterations,
        "curves": curves(rows)})


def curves(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Each drawn metric per iteration (null where a row lacks it)."""
    present = [name for name in CURVES if any(_finite(row, name) is not None for row in rows)]
    return {"iteration": [int(row.get("iteration", i)) for i, row in enumerate(rows)],
            "metrics": {name: [_finite(row, name) for row in rows] for name in present}}


def _finite(row: dict[str, float], name: str) -> float | None:
    """A metric of a row, None where it is missing or NaN (JSON, and the page, have no NaN)."""
    number = row.get(name)
    return None if number is None or math.isnan(number) else number
