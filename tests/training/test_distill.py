"""Distillation on the tiny model: the student's KL to the teacher falls; bad teachers exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agents.llm.adapters import attach_adapters, save_adapters
from agents.llm.loading import load_model
from agents.model import ModelConfig
from runtime.cli import main
from tests.training.test_trainer import SCENARIO
from training.distill import kl_divergence


def _teacher(tiny_model_dir: Path, folder: Path) -> Path:
    """Adapters for speaker and listener with random LoRA B: a policy unlike the base's."""
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    torch.manual_seed(0)
    peft = attach_adapters(model, ["speaker", "listener"], rank=2, alpha=4)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    save_adapters(peft, folder / "adapters")
    return folder


def _distilled(tiny_model_dir: Path, tmp_path: Path, *options: str) -> dict[str, Any]:
    """`parley distill` of a random tiny teacher into tmp_path/student; its distill.json."""
    scenario = tmp_path / "codes.yaml"
    scenario.write_text(SCENARIO.replace("MODEL", str(tiny_model_dir)))
    teacher = _teacher(tiny_model_dir, tmp_path / "teacher")
    out = tmp_path / "student"
    assert main(["distill", str(scenario), "--teacher", str(teacher), "--out", str(out),
                 "--episodes", "6", "--epochs", "3", "--concurrency", "2", "--no-progress",
                 *options]) == 0
    report: dict[str, Any] = json.loads((out / "distill.json").read_text())
    return report


def test_distillation_lowers_the_kl_and_reports_all_three_players(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "student"
    report = _distilled(tiny_model_dir, tmp_path, "--eval-episodes", "4")
    assert report["kl_before"] > 0.0 and report["kl_per_epoch"][-1] < report["kl_before"]
    assert {p.name for p in (out / "adapters").iterdir()} == {"speaker", "listener"}
    assert all(report[who]["episodes"] == 4 for who in ("teacher", "student", "described"))
    assert report["teacher_training_s"] is None  # the teacher folder holds no metrics.csv
    assert "student (KL)" in capsys.readouterr().out
    assert (out / "distill.png").read_bytes()[:4] == b"\x89PNG"


def test_a_smaller_model_with_the_same_tokenizer_can_be_the_student(
    tiny_model_dir: Path, other_tiny_model_dir: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "student"
    report = _distilled(tiny_model_dir, tmp_path, "--eval-episodes", "2",
                        "--student-model", str(other_tiny_model_dir))
    assert report["student_model"] == str(other_tiny_model_dir)
    assert report["kl_per_epoch"][-1] < report["kl_before"]
    config = json.loads((out / "adapters" / "speaker" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(other_tiny_model_dir)


def test_a_teacher_folder_without_adapters_exits_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["distill", "scenarios/referential_codes.yaml", "--teacher",
                 str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no adapters" in capsys.readouterr().err


def test_the_kl_is_zero_for_equal_distributions_and_ignores_masked_tokens() -> None:
    teacher = torch.log_softmax(torch.tensor([[1.0, 2.0, float("-inf")]]), -1)
    student = torch.log_softmax(torch.tensor([[2.0, 1.0, float("-inf")]]), -1)
    student.requires_grad_(True)
    assert float(kl_divergence(teacher, teacher)) == pytest.approx(0.0)
    value = kl_divergence(teacher, student).sum()
    value.backward()  # type: ignore[no-untyped-call]
    assert float(value) > 0.0 and torch.isfinite(student.grad).all()  # type: ignore[arg-type]
