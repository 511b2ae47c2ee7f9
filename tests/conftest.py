"""Shared fixtures: a tiny random Llama with SmolLM2's real tokenizer, offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import torch
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from agents.llm.loading import DEFAULT_MODEL, cache_root, default_gguf_path


def _smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer: from the converted cache when present, else from the GGUF (~5 s)."""
    cached = cache_root() / "models" / DEFAULT_MODEL
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached, local_files_only=True)
    gguf = default_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _tiny_llama(folder: Path, layers: int, width: int) -> Path:
    """Save a random LlamaForCausalLM of `layers` x `width` with SmolLM2's tokenizer."""
    tokenizer = _smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        # Wider initial weights than usual make the distributions less flat,
        # so greedy, top-p and sampling differ visibly.
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a 2-layer, 64-wide LlamaForCausalLM and SmolLM2's tokenizer."""
    return _tiny_llama(tmp_path_factory.mktemp("tiny-llama"), layers=2, width=64)


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model with the same tokenizer: 1 layer, 32 wide (a distillation student)."""
    return _tiny_llama(tmp_path_factory.mktemp("other-tiny-llama"), layers=1, width=32)


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Each test starts with structlog's defaults, whatever an earlier CLI test configured."""
    yield
    structlog.reset_defaults()
