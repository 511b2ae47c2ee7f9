"""LoRA adapters through peft: one named adapter per learning agent (or group).

Folder layout: `<directory>/<adapter name>/` holds one peft adapter
(`adapter_config.json` and `adapter_model.safetensors`), so a run's adapters are
saved, copied and loaded as one folder.

peft's `set_adapter(name)` and `disable_adapter()` rewrite `requires_grad` on
every LoRA parameter (only the newly active adapter stays trainable). Training
several agents' adapters from one backward pass would then silently freeze all
but one; `adapter_scope` therefore switches adapters while keeping everyone's
`requires_grad` as the caller set it, and `enable_adapter_grads` re-enables the
adapters being trained.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import safetensors.torch
import structlog
import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

log = structlog.get_logger()

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
_CONFIG_FILE = "adapter_config.json"
_WEIGHTS_FILE = "adapter_model.safetensors"


class AdapterDigestError(ValueError):
    """Adapter files that are not the ones their sender hashed (a stale or partial copy)."""


def attach_adapters(
    model: torch.nn.Module,
    names: Sequence[str],
    rank: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    top_layers: int | None = None,
) -> PeftModel:
    """Add one fresh, trainable LoRA adapter per name (a PeftModel is extended in place).

    A fresh adapter starts as the identity (peft initialises LoRA B to zeros),
    so attaching adapters does not change the model's behaviour. `top_layers`
    puts the adapters in the last N transformer layers only: backward passes then
    stop below them, which makes each update step much cheaper.
    """
    if not names:
        raise ValueError("attach_adapters needs at least one adapter name")
    layers = int(getattr(model, "config").num_hidden_layers)  # noqa: B009 - transformers config
    if top_layers is not None and not 1 <= top_layers <= layers:
        raise ValueError(f"top_layers must be between 1 and {layers}, got {top_layers}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        layers_to_transform=None if top_layers is None else list(range(layers - top_layers,
                                                                       layers)),
    )
    first, *rest = names
    if isinstance(model, PeftModel):
        peft_model = model
        rest = list(names)
    else:
        wrapped = get_peft_model(model, config, adapter_name=first)
        assert isinstance(wrapped, PeftModel)
        peft_model = wrapped
    for name in rest:
        peft_model.add_adapter(name, config)
    enable_adapter_grads(peft_model, names)
    log.info("adapters_attached", names=list(names), rank=rank, alpha=alpha,
             top_layers=top_layers or layers)
    return peft_model


def enable_adapter_grads(model: PeftModel, names: Sequence[str]) -> None:
    """Make the LoRA parameters of every adapter in `names` trainable again.

    Call after `set_adapter` (which freezes every other adapter) when several
    adapters learn from the same backward pass.
    """
    for name in names:
        if name not in model.peft_config:
            raise KeyError(f"no adapter named {name!r}; have {sorted(model.peft_config)}")
    model.set_requires_grad(list(names), requires_grad=True)


def adapter_params(model: torch.nn.Module, adapters: list[str]) -> list[torch.nn.Parameter]:
    """The LoRA parameters of `adapters`, in name order (the same fresh or loaded from disk).

    peft names them `...lora_A.<adapter>.weight`."""
    wanted = {f".{name}." for name in adapters}
    return [param for name, param in sorted(model.named_parameters())
            if param.requires_grad and any(part in name for part in wanted)]


def save_adapters(model: PeftModel, directory: str | Path,
                  names: Sequence[str] | None = None) -> list[str]:
    """Save `names` (default: every adapter of `model`) to `<directory>/<name>/`; returns
    the names saved."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    names = list(model.peft_config) if names is None else list(names)
    for name in names:
        # peft writes a non-"default" adapter to <dir>/<name> and "default" to <dir>
        # itself; aim "default" at its own subfolder so the layout stays uniform.
        target = root / "default" if name == "default" else root
        model.save_pretrained(str(target), selected_adapters=[name])
    log.info("adapters_saved", directory=str(root), names=names)
    return names


def replace_adapters(model: PeftModel, directory: Path, names: Sequence[str]) -> Path:
    """Save `names` to `directory`, replacing what it held as a whole: written aside, then
    renamed, so that a reader never finds half a folder."""
    aside = directory.with_name(f".tmp_{directory.name}")
    shutil.rmtree(aside, ignore_errors=True)
    save_adapters(model, aside, names)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(aside, directory)
    return directory


def adapter_folders(directory: str | Path) -> dict[str, Path]:
    """The adapters saved under `directory`: name to subfolder, sorted by name. A subfolder
    counts when it holds both files of a peft adapter (a copy without its weights does not).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"adapters folder {root} does not exist")
    return {sub.name: sub for sub in sorted(root.iterdir())
            if (sub / _CONFIG_FILE).is_file() and (sub / _WEIGHTS_FILE).is_file()}


def load_adapters(
    model: torch.nn.Module, directory: str | Path, is_trainable: bool = False, prefix: str = ""
) -> PeftModel:
    """Load every adapter subfolder of `directory` as a named adapter (`prefix` + its name).

    Adapters `model` already has are left alone (so loading twice is harmless). A prefix
    keeps apart same-named adapters of several runs (cross-play of trained seeds).
    """
    folders = adapter_folders(directory)
    if not folders:
        raise FileNotFoundError(f"no adapters (subfolders with {_CONFIG_FILE} and "
                                f"{_WEIGHTS_FILE}) in {directory}")
    peft_model = model if isinstance(model, PeftModel) else None
    for saved, folder in folders.items():
        name = prefix + saved
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(
                model, str(folder), adapter_name=name, is_trainable=is_trainable
            )
        elif name not in peft_model.peft_config:
            peft_model.load_adapter(str(folder), adapter_name=name, is_trainable=is_trainable)
    assert peft_model is not None
    log.info("adapters_loaded", directory=str(directory), names=[prefix + n for n in folders])
    return peft_model


@contextmanager
def _grads_kept(model: torch.nn.Module) -> Iterator[list[tuple[torch.nn.Parameter, bool]]]:
    """Restore every parameter's `requires_grad` on exit (peft rewrites them)."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        yield flags
    finally:
        _restore(flags)


def _restore(flags: list[tuple[torch.nn.Parameter, bool]]) -> None:
    for param, flag in flags:
        param.requires_grad_(flag)


@contextmanager
def adapter_scope(model: torch.nn.Module, adapter: str | None) -> Iterator[None]:
    """Run the body under `adapter` (None: base model), then switch back.

    `requires_grad` flags stay as the caller set them, inside and after the
    scope, so gradients flow to the scoped adapter only if it was trainable.
    A plain (non-peft) model accepts only `adapter=None`.
    """
    if not isinstance(model, PeftModel):
        if adapter is not None:
            raise ValueError(f"adapter {adapter!r} requested but the model has no LoRA adapters")
        yield
        return
    with _grads_kept(model) as flags:
        if adapter is None:
            with model.disable_adapter():
                _restore(flags)
                yield
            return
        if adapter not in model.peft_config:
            raise ValueError(f"no adapter named {adapter!r}; have {sorted(model.peft_config)}")
        previous = model.active_adapter
        model.set_adapter(adapter)
        _restore(flags)
        try:
            yield
        finally:
            model.set_adapter(previous)


class _HoldsModel(Protocol):
    """What `ensure_adapters` needs of an engine: its model, replaceable."""

    model: torch.nn.Module


_ENSURED: dict[int, set[Path]] = {}


def ensure_adapters(engine: _HoldsModel, directory: str | Path) -> PeftModel:
    """Make `engine.model` a PeftModel holding the adapters in `directory`, once per process.

    Agents that share an engine (one per model per process) and the same
    adapters folder load it only once; a second folder adds its adapters.
    """
    root = Path(directory).resolve()
    done = _ENSURED.setdefault(id(engine), set())
    if root in done and isinstance(engine.model, PeftModel):
        return engine.model
    peft_model = load_adapters(engine.model, root)
    peft_model.eval()
    engine.model = peft_model
    done.add(root)
    return peft_model


def adapters_digest(directory: str | Path, names: Sequence[str]) -> str:
    """The sha256 of the named adapters' files under `directory` (config and weights)."""
    return _read_adapters(Path(directory), names)[0]


def refresh_adapters(engine: _HoldsModel, directory: str | Path, names: Sequence[str],
                     digest: str) -> PeftModel:
    """Load the named adapters' current weights from `directory` into `engine.model`.

    The files are read once, checked against `digest` (`adapters_digest` of the sender),
    and the weights loaded are those bytes: a copy still being written, or an older one,
    is refused rather than played. Adapters the model lacks are added first.

    Raises:
        AdapterDigestError: the files are not the ones `digest` was taken of.
    """
    root = Path(directory)
    found, weights = _read_adapters(root, names)
    if found != digest:
        raise AdapterDigestError(f"adapters in {root}: sha256 {found[:12]}, expected "
                                 f"{digest[:12]} (a stale or partial copy?)")
    model = engine.model
    if not isinstance(model, PeftModel) or any(n not in model.peft_config for n in names):
        model = load_adapters(model, root)
    for name, data in weights.items():
        set_peft_model_state_dict(model, safetensors.torch.load(data), adapter_name=name)
    model.eval()
    engine.model = model
    return model


def _read_adapters(root: Path, names: Sequence[str]) -> tuple[str, dict[str, bytes]]:
    """The digest of the named adapters' files, and each one's weights file as read."""
    digest, weights = hashlib.sha256(), {}
    for name in sorted(names):
        for file in (_CONFIG_FILE, _WEIGHTS_FILE):
            path = root / name / file
            if not path.is_file():
                raise FileNotFoundError(f"adapter {name!r}: no {path}")
            data = path.read_bytes()
            digest.update(f"{name}/{file}:{len(data)}:".encode())
            digest.update(data)
            if file == _WEIGHTS_FILE:
                weights[name] = data
    return digest.hexdigest(), weights
