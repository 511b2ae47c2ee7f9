"""Learning-curve PNGs, the ablation figure and the ablation table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training.metrics import MetricsWriter
from training.plot import ablation_table, plot_ablation, plot_run

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


def test_plot_ablation_writes_the_figure(tmp_path: Path) -> None:
    runs = {
        "central critic": [fake_run(tmp_path / f"c{s}", 40, 0.8 + 0.05 * s) for s in range(3)],
        # seeds of different lengths: only the common iterations are drawn
        "independent": [fake_run(tmp_path / f"i{s}", 30 + 5 * s, 0.5) for s in range(2)],
        "one seed": [fake_run(tmp_path / "one", 20, 0.3)],
    }
    out = plot_ablation(runs, tmp_path / "figures" / "ablation.png")
    assert out == tmp_path / "figures" / "ablation.png"
    assert_png(out)


def test_ablation_table_reports_final_values_over_seeds(tmp_path: Path) -> None:
    runs = {"a": [tmp_path / "a1", tmp_path / "a2"], "b": [tmp_path / "b1"]}
    for path, success, ret in [("a1", 0.6, 1.0), ("a2", 0.8, 3.0), ("b1", 0.4, 2.0)]:
        with MetricsWriter(tmp_path / path, tensorboard=False) as metrics:
            metrics.write(1, {"success_rate": 0.0, "return_mean": 0.0})
            metrics.write(2, {"success_rate": success, "return_mean": ret})
            metrics.write(3, {"kl": 0.1})  # the last row need not carry every metric
    lines = ablation_table(runs).splitlines()
    assert lines[0] == "| variant | seeds | final success rate | final return |"
    # a: mean 0.7, sample std 0.1414; return mean 2, std 1.4142
    assert lines[2] == "| a | 2 | 0.700 ± 0.141 | 2.000 ± 1.414 |"
    assert lines[3] == "| b | 1 | 0.400 ± 0.000 | 2.000 ± 0.000 |"
    assert len(lines) == 4


def test_ablation_table_without_the_metric(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path / "x", tensorboard=False) as metrics:
        metrics.write(1, {"return_mean": 1.5})
    table = ablation_table({"x": [tmp_path / "x"]})
    assert table.splitlines()[2] == "| x | 1 | n/a | 1.500 ± 0.000 |"


@pytest.mark.parametrize("metric", ["success_rate", "return_mean"])
def test_plot_ablation_any_metric_column(tmp_path: Path, metric: str) -> None:
    runs = {"v": [fake_run(tmp_path / "s0", 10, 0.5), fake_run(tmp_path / "s1", 10, 0.6)]}
    assert_png(plot_ablation(runs, tmp_path / f"{metric}.png", metric=metric))
