"""`parley plot`: learning-curve PNGs of one run (the ablation's are in test_ablation)."""

from __future__ import annotations

import math
from pathlib import Path

from training.metrics import MetricsWriter
from training.plot import plot_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(out_dir: Path, iterations: int, rate: float, with_validity: bool = True) -> Path:
    """A metrics.csv shaped like the trainer's: success climbs towards `rate`."""
    with MetricsWriter(out_dir, tensorboard=False) as metrics:
        for i in range(1, iterations + 1):
            progress = 1 - math.exp(-i / 10)
            row = {
                "episodes": 8.0 * i,
                "return_mean": 2 * rate * progress,
                "success_rate": rate * progress + 0.05 * math.sin(i),
                "policy_loss": -0.01 * progress,
                "value_loss": 1 / i,
                "entropy": 1.1 - progress,
                "kl": 0.01 / i,
                "approx_kl": 0.012 / i,
                "clipfrac": 0.2 * (1 - progress),
            }
            if with_validity:
                row["message_validity"] = min(1.0, 0.5 + progress / 2)
            metrics.write(i, row)
    return out_dir


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000  # axes, curves and text, not a blank canvas


def test_plot_run_writes_combined_and_per_metric_pngs(tmp_path: Path) -> None:
    written = plot_run(fake_run(tmp_path, 60, 0.9))
    plots = tmp_path / "plots"
    assert written[0] == plots / "learning_curves.png"
    assert {p.name for p in written[1:]} == {
        "return.png",
        "success.png",
        "kl.png",
        "value_loss.png",
        "policy_loss.png",
        "entropy.png",
        "clipfrac.png",
        "message_validity.png",
    }
    for path in written:
        assert_png(path)


def test_plot_run_skips_missing_columns(tmp_path: Path) -> None:
    written = plot_run(fake_run(tmp_path, 5, 0.5, with_validity=False))
    names = {p.name for p in written}
    assert "message_validity.png" not in names and "success.png" in names
    assert not (tmp_path / "plots" / "message_validity.png").exists()


def test_plot_run_with_no_known_metric_draws_nothing(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"something_else": 1.0})
    assert plot_run(tmp_path) == []
    assert not (tmp_path / "plots").exists()
