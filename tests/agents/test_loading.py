"""Model loading: local folders, GGUF conversion into the cache, hub ids, failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from agents.base import ModelConfig
from agents.llm import ModelNotFound, load_model, loading


@pytest.fixture
def parley_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "parley-cache"
    monkeypatch.setenv("PARLEY_CACHE", str(cache))
    return cache


@pytest.fixture
def fake_conversion(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the slow GGUF de-quantisation by a copy of the tiny model; record calls."""
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    return calls


def test_local_folder_loads_in_eval_mode_with_left_padding(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    assert not model.training
    assert model.dtype == torch.float32
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None


def test_dtype_comes_from_config(tiny_model_dir: Path) -> None:
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16"))
    assert model.dtype == torch.bfloat16


@pytest.mark.parametrize(("dtype", "attention", "kernel"), [
    ("float32", "auto", "sdpa"), ("bfloat16", "auto", "eager"), ("bfloat16", "sdpa", "sdpa")])
def test_attention_kernel_is_eager_only_for_half_precision_on_the_cpu_unless_named(
        tiny_model_dir: Path, dtype: str, attention: str, kernel: str) -> None:
    config = ModelConfig(name=str(tiny_model_dir), dtype=dtype, attention=attention,
                         device="cpu")
    model, _ = load_model(config)
    assert model.config._attn_implementation == kernel
    assert loading.attention_kernel(config, torch.device("cuda")) == (
        "sdpa" if attention == "auto" else attention)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_flat_output_layer_gives_the_plain_layers_logits_on_sliced_input(
        tiny_model_dir: Path, dtype: str) -> None:
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), dtype=dtype, device="cpu"))
    output = model.get_output_embeddings()
    assert isinstance(output, loading.FlatLinear)
    assert output.weight is model.get_input_embeddings().weight  # still tied
    hidden = torch.randn(3, 7, output.in_features, dtype=model.dtype)[:, 2:]  # not contiguous
    plain = torch.nn.functional.linear(hidden, output.weight)
    assert output(hidden).shape == plain.shape == (3, 5, output.out_features)
    torch.testing.assert_close(output(hidden), plain)


def test_unknown_dtype_is_rejected(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(ModelConfig(name=str(tiny_model_dir), dtype="float8"))


def test_gguf_file_is_converted_once_then_read_from_cache(
    tmp_path: Path, parley_cache: Path, fake_conversion: list[Path]
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    load_model(ModelConfig(name=str(gguf)))
    model, _ = load_model(ModelConfig(name=str(gguf)))
    assert fake_conversion == [gguf]
    (cached,) = (parley_cache / "models").iterdir()
    assert cached.name.startswith("gguf-tiny-")
    assert (cached / "config.json").is_file()
    assert model.config.num_hidden_layers == 2


def test_default_model_converts_the_shipped_gguf(
    parley_cache: Path, fake_conversion: list[Path]
) -> None:
    load_model(ModelConfig())
    assert fake_conversion[0].suffix == ".gguf"
    assert fake_conversion[0].is_file()
    assert (parley_cache / "models" / "smollm2-135m-instruct" / "config.json").is_file()


def test_losing_a_conversion_race_keeps_the_winners_cache(
    tmp_path: Path, parley_cache: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "raced.gguf"
    gguf.write_bytes(b"GGUF")
    winner_marker = "written-by-the-other-process"

    def convert(source: Path, out: Path) -> None:
        # The other process finishes first: its folder appears at the target.
        target = out.parent / out.name[1:].rsplit(".", 1)[0]  # temp is .<name>.<random>
        shutil.copytree(tiny_model_dir, target)
        (target / winner_marker).touch()
        shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    load_model(ModelConfig(name=str(gguf)))
    (cached,) = (parley_cache / "models").iterdir()  # no stray temporary folder
    assert (cached / winner_marker).is_file()


def test_missing_gguf_file_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"missing\.gguf"):
        load_model(ModelConfig(name=str(tmp_path / "missing.gguf")))


def test_folder_without_config_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"config\.json"):
        load_model(ModelConfig(name=str(tmp_path)))


def test_hub_id_not_cached_raises_model_not_found_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFound, match=r"nobody/no-such-model.*Hugging Face cache"):
        load_model(ModelConfig(name="nobody/no-such-model"))


def test_hub_id_in_local_cache_loads(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "models--someone--tiny"
    commit = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    model, _ = load_model(ModelConfig(name="someone/tiny"))
    assert model.config.hidden_size == 64
