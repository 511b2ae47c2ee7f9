"""Checkpoints: a full round trip, atomic writes, the latest one, pruning."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel

from agents.base import ModelConfig
from agents.llm.adapters import attach_adapters, load_adapters
from agents.llm.loading import load_model
from training.checkpoint import (
    checkpoint_dir,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from training.config import PPOConfig
from training.critic import Critic, CriticRows


def _lora(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _critic() -> Critic:
    return Critic(64, PPOConfig(critic_model="frozen", critic_hidden=8), ["a"])


def _learners(tiny_model_dir: Path) -> tuple[PeftModel, Critic,
                                              dict[str, torch.optim.Optimizer]]:
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    peft = attach_adapters(model, ["listener", "speaker"], rank=2)
    critic = _critic()
    lora = [p for _, p in sorted(peft.named_parameters()) if p.requires_grad]
    return peft, critic, {"actor": torch.optim.Adam(lora, lr=1e-3),
                          "critic": torch.optim.Adam(critic.parameters(), lr=1e-3)}


def _step(critic: Critic, optimisers: dict[str, torch.optim.Optimizer]) -> None:
    """One optimiser step of every parameter, so that Adam has state to save."""
    for optimiser in optimisers.values():
        params = [p for group in optimiser.param_groups for p in group["params"]]
        rows = CriticRows(["a"], [], torch.ones(1, 64))  # a frozen critic reads no model
        values = critic(torch.nn.Identity(), rows, torch.arange(1))
        loss = sum(p.square().sum() for p in params) + values.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_round_trip_restores_everything(tiny_model_dir: Path, tmp_path: Path) -> None:
    peft, critic, optimisers = _learners(tiny_model_dir)
    _step(critic, optimisers)
    critic.normaliser.update(torch.tensor([1.0, 2.0, 4.0]))
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint(tmp_path, 7, peft, critic, optimisers, {"return_mean": 0.5})
    after = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert path == checkpoint_dir(tmp_path, 7) and (path / "metrics.json").is_file()

    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    loaded = load_adapters(model, path / "adapters", is_trainable=True)
    assert all(torch.equal(a, b) for a, b in zip(_lora(peft).values(), _lora(loaded).values(),
                                                  strict=True))
    assert sorted(_lora(peft)) == sorted(_lora(loaded))
    fresh_critic = _critic()
    fresh_optimisers: dict[str, torch.optim.Optimizer] = {
        "actor": torch.optim.Adam(
            [p for _, p in sorted(loaded.named_parameters()) if p.requires_grad], lr=1e-3),
        "critic": torch.optim.Adam(fresh_critic.parameters(), lr=1e-3)}
    assert restore_checkpoint(path, fresh_critic, fresh_optimisers) == 7
    for name in optimisers:
        saved, restored = optimisers[name].state_dict(), fresh_optimisers[name].state_dict()
        assert saved["state"].keys() == restored["state"].keys()
        for key, state in saved["state"].items():
            assert torch.equal(state["exp_avg"], restored["state"][key]["exp_avg"])
    for a, b in zip(critic.parameters(), fresh_critic.parameters(), strict=True):
        assert torch.equal(a, b)
    assert fresh_critic.normaliser.mean == pytest.approx(critic.normaliser.mean)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == after


def test_latest_skips_unfinished_checkpoints_and_old_ones_are_pruned(
    tiny_model_dir: Path, tmp_path: Path,
) -> None:
    peft, critic, optimisers = _learners(tiny_model_dir)
    assert latest_checkpoint(tmp_path) is None
    for completed in (1, 2, 3):
        save_checkpoint(tmp_path, completed, peft, critic, optimisers, {}, keep=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["iter_0002", "iter_0003"]
    (root / ".tmp_iter_0005").mkdir()  # a crash while writing: never renamed into place
    (root / "iter_0004").mkdir()  # not a checkpoint: no state
    assert latest_checkpoint(tmp_path) == root / "iter_0003"


def test_saving_an_iteration_again_replaces_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    peft, critic, optimisers = _learners(tiny_model_dir)
    save_checkpoint(tmp_path, 1, peft, critic, optimisers, {"x": 1.0})
    save_checkpoint(tmp_path, 1, peft, None, {}, {"x": 2.0})
    path = checkpoint_dir(tmp_path, 1)
    assert '"x": 2.0' in (path / "metrics.json").read_text()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["iter_0001"]
