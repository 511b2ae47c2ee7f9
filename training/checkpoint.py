"""Checkpoints: everything needed to continue a training run exactly where it stopped.

Layout: `OUT/checkpoints/iter_NNNN/` where NNNN is the number of iterations
completed (so also the index of the next one), holding

- `adapters/`: every LoRA adapter (the `save_adapters` layout);
- `state.pt`: the iteration, the value head, both optimisers' states, the value
  normaliser and the global RNG states (python, numpy, torch);
- `metrics.json`: the metrics of the last iteration.

Every iteration's seeds are derived from (base seed, iteration), so the
iteration number alone fixes the next rollout; the global RNG states are saved
as well for anything else that draws from them. A checkpoint is written to a
temporary folder and renamed into place, so a crash leaves either the whole
checkpoint or none.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from peft import PeftModel

from agents.llm.adapters import save_adapters
from training.critic import Critic

log = structlog.get_logger()

CHECKPOINTS = "checkpoints"
ADAPTERS = "adapters"
_STATE = "state.pt"
_PREFIX = "iter_"


def checkpoint_dir(out: Path, completed: int) -> Path:
    """Where the checkpoint after `completed` iterations lives."""
    return out / CHECKPOINTS / f"{_PREFIX}{completed:04d}"


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint with the most iterations completed under `out`, or None."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir()
             if p.is_dir() and p.name.startswith(_PREFIX) and (p / _STATE).is_file()]
    return max(found, key=lambda p: int(p.name.removeprefix(_PREFIX)), default=None)


def save_checkpoint(
    out: Path,
    completed: int,
    model: PeftModel,
    critic: Critic | None,
    optimisers: dict[str, torch.optim.Optimizer],
    metrics: dict[str, float],
    keep: int = 3,
) -> Path:
    """Write the checkpoint after `completed` iterations atomically; keep the last `keep`."""
    final = checkpoint_dir(out, completed)
    temporary = final.with_name(f".tmp_{final.name}")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    save_adapters(model, temporary / ADAPTERS)
    state: dict[str, Any] = {
        "iteration": completed,
        "optimisers": {name: opt.state_dict() for name, opt in optimisers.items()},
        "rng": _rng_states(),
    }
    if critic is not None:
        state["critic"] = critic.state_dict()
        state["normaliser"] = critic.normaliser.state_dict()
    torch.save(state, temporary / _STATE)
    (temporary / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    if final.exists():  # the same iteration saved before (a rerun): replace it whole
        shutil.rmtree(final)
    os.replace(temporary, final)
    _prune(out, keep)
    log.info("checkpoint_saved", path=str(final), iteration=completed)
    return final


def restore_checkpoint(
    path: Path, critic: Critic | None, optimisers: dict[str, torch.optim.Optimizer]
) -> int:
    """Load a checkpoint's state into `critic` and `optimisers`; returns iterations completed.

    The adapters (`path / "adapters"`) must already be loaded into the model and
    the optimisers built over their parameters, in the same order as when saved.
    """
    state = torch.load(path / _STATE, weights_only=True)
    for name, optimiser in optimisers.items():
        optimiser.load_state_dict(state["optimisers"][name])
    if critic is not None:
        critic.load_state_dict(state["critic"])
        critic.normaliser.load_state_dict(state["normaliser"])
    _set_rng_states(state["rng"])
    log.info("checkpoint_restored", path=str(path), iteration=state["iteration"])
    return int(state["iteration"])


def _rng_states() -> dict[str, Any]:
    """The global RNG states, in types `torch.load(weights_only=True)` accepts."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss,
                  cached],
        "torch": torch.get_rng_state(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])


def _prune(out: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    root = out / CHECKPOINTS
    done = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)),
                  key=lambda p: int(p.name.removeprefix(_PREFIX)))
    for old in done[:-keep] if keep > 0 else []:  # keep 0: keep all
        shutil.rmtree(old)
