"""`parley ablate`: variants x seeds in child processes, a table and a plot (tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.training.test_plot import assert_png, fake_run
from tests.training.test_trainer import SCENARIO
from training.ablation import cells, load_variants, plot_ablation, render_table
from training.metrics import MetricsWriter


def test_ablate_trains_and_evaluates_every_cell_then_skips_finished_ones(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "codes.yaml"
    scenario.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    variants = tmp_path / "variants.yaml"
    variants.write_text('variants:\n  central: {}\n  blind listener: '
                        '{agents.listener.options.turn_template: "{actions}"}\n')
    out = tmp_path / "ablation"
    args = ["ablate", str(scenario), "--variants", str(variants), "--seeds", "3",
            "--iterations", "1", "--episodes", "2", "--jobs", "2", "--out", str(out)]
    assert main(args) == 0
    table = (out / "ablation.md").read_text()
    assert "| central |" in table and "| blind listener |" in table
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    blind = (out / "blind_listener-seed3" / "scenario.yaml").read_text()
    assert "turn_template: '{actions}'" in blind and "seed: 3" in blind
    trained = (out / "central-seed3" / "adapters").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0  # everything evaluated: nothing runs again
    assert (out / "central-seed3" / "adapters").stat().st_mtime == trained
    assert capsys.readouterr().out.startswith(table)


def test_variants_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [a, b]\n")
    with pytest.raises(ValueError, match="variants"):
        load_variants(bad)
    todo = cells({"a": {}, "b": {"training.critic": "none"}}, [0, 1], tmp_path)
    assert [(c.variant, c.seed) for c in todo] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


def test_table_reports_success_iterations_to_threshold_minutes_and_explained_variance(
        tmp_path: Path) -> None:
    todo = cells({"a": {}, "b": {"training.critic": "none"}}, [1, 0], tmp_path)
    curves = {("a", 1): [0.5, 0.9, 0.7], ("a", 0): [0.85, 0.9], ("b", 1): [0.2, 0.3]}
    for cell in todo:  # ("b", 0) never trained: no metrics.csv
        if (cell.variant, cell.seed) in curves:
            with MetricsWriter(cell.folder, tensorboard=False) as metrics:
                for i, rate in enumerate(curves[cell.variant, cell.seed], start=1):
                    row = {"success_rate": rate, "wall_s": 30.0}
                    metrics.write(i, row | ({"explained_variance": 0.1 * i}
                                            if cell.variant == "a" else {}))
    summaries = [{"success_rate": r, "episodes": 10} for r in (0.75, 0.25, 0.5, 0.25)]
    assert render_table(todo, summaries, threshold=0.8) == (
        "| variant | success (10 eval episodes), mean ± sd | per seed | iterations to 0.8 "
        "training success | training minutes | explained variance, mean |\n"
        "|---|---|---|---|---|---|\n"
        # sample sd; seeds listed 0 then 1; EV over all five iterations of both seeds
        "| a | 0.62 ± 0.18 | 0.50, 0.75 | 1, 2 | 1.0, 1.5 | 0.180 |\n"
        "| b | 0.25 ± 0.00 | 0.25, 0.25 | -, never | -, 1.0 | n/a |\n"
    )


def test_figure_from_the_cells_training_metrics(tmp_path: Path) -> None:
    todo = cells({"central": {}, "independent": {}, "not started": {}}, [0, 1], tmp_path)
    for cell in todo:
        if cell.variant == "not started":  # a header and no iteration: left out of the figure
            with MetricsWriter(cell.folder, tensorboard=False):
                pass
        else:  # seeds of different lengths: the curve stops at the shortest
            fake_run(cell.folder, 20 + 5 * cell.seed, 0.8 if cell.variant == "central" else 0.4)
    plot_ablation(todo, tmp_path / "ablation.png")
    assert_png(tmp_path / "ablation.png")


@pytest.mark.parametrize("name", ["referential_attributes.yaml", "referential_codes.yaml"])
def test_the_shipped_variants_are_valid_settings_of_their_scenario(name: str) -> None:
    from training.train_scenario import load_train_scenario

    root = Path(__file__).parents[2] / "scenarios"
    variants = load_variants(root / "ablations" / name)
    assert len(variants) == 4
    loaded = {variant: load_train_scenario(root / name, overrides)
              for variant, overrides in variants.items()}
    assert {s.training.critic for s in loaded.values()} == {"central", "independent", "none"}
    blind = loaded["listener gets no messages"].agents["listener"].options["turn_template"]
    assert isinstance(blind, str) and "{inbox}" not in blind
