"""MetricsWriter: CSV round trip, column union, resume, TensorBoard scalars."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from training.metrics import MetricsWriter, read_metrics


def test_csv_round_trip_keeps_every_digit(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"episodes": 8, "return_mean": 0.1 + 0.2, "kl": 1e-7})
        metrics.write(2, {"episodes": 16, "return_mean": -3.25, "kl": 2.5e-3})
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows == [
        {"iteration": 1.0, "episodes": 8.0, "return_mean": 0.1 + 0.2, "kl": 1e-7},
        {"iteration": 2.0, "episodes": 16.0, "return_mean": -3.25, "kl": 2.5e-3},
    ]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "iteration,episodes,return_mean,kl"


def test_rows_are_on_disk_before_close(tmp_path: Path) -> None:
    metrics = MetricsWriter(tmp_path, tensorboard=False)
    metrics.write(1, {"return_mean": 0.5})
    assert read_metrics(tmp_path) == [{"iteration": 1.0, "return_mean": 0.5}]
    metrics.close()


def test_nan_survives_the_round_trip(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"success_rate": math.nan})
    assert math.isnan(read_metrics(tmp_path)[0]["success_rate"])


def test_new_column_rewrites_file_with_union(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"return_mean": 1.0})
        metrics.write(2, {"return_mean": 2.0, "success_rate": 0.5, "custom": 7.0})
        metrics.write(3, {"success_rate": 0.75})
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "iteration,return_mean,success_rate,custom"
    assert len(lines) == 4  # one header, three rows
    assert read_metrics(tmp_path) == [
        {"iteration": 1.0, "return_mean": 1.0},
        {"iteration": 2.0, "return_mean": 2.0, "success_rate": 0.5, "custom": 7.0},
        {"iteration": 3.0, "success_rate": 0.75},
    ]


def test_resume_drops_rows_from_start_iteration_on(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        for i in range(1, 6):
            metrics.write(i, {"return_mean": float(i)})
    with MetricsWriter(tmp_path, tensorboard=False, start_iteration=4) as metrics:
        metrics.write(4, {"return_mean": 40.0})
    rows = read_metrics(tmp_path)
    assert [r["iteration"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
    assert rows[-1]["return_mean"] == 40.0


def test_default_start_overwrites_an_old_run(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"old": 1.0})
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"new": 2.0})
    assert read_metrics(tmp_path) == [{"iteration": 1.0, "new": 2.0}]


def test_conflicting_iteration_and_closed_writer_are_rejected(tmp_path: Path) -> None:
    metrics = MetricsWriter(tmp_path, tensorboard=False)
    with pytest.raises(ValueError, match="iteration"):
        metrics.write(2, {"iteration": 3})
    metrics.close()
    metrics.close()
    with pytest.raises(ValueError, match="closed"):
        metrics.write(1, {"kl": 0.0})


def test_tensorboard_receives_the_scalars(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path) as metrics:
        metrics.write(1, {"return_mean": 0.25, "kl": 0.01})
        metrics.write(2, {"return_mean": 0.75})
    event_files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(event_files) == 1 and event_files[0].stat().st_size > 0
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"return_mean", "kl"}
    assert [(e.step, e.value) for e in events.Scalars("return_mean")] == [(1, 0.25), (2, 0.75)]
