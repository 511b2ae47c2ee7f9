"""Pooled last hidden states of the language model: what a critic reads a text as."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from peft import PeftModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope

Pooling = Literal["mean", "last"]


def hidden_size(model: nn.Module) -> int:
    """Width of the model's hidden states (the feature vector)."""
    return int(getattr(model, "config").hidden_size)  # noqa: B009 - transformers config


def tokenise(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    return [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def hidden_states(model: nn.Module, ids: Sequence[Sequence[int]], pooling: Pooling,
                  adapter: str | None, batch_size: int = 16, pad: int = 0) -> torch.Tensor:
    """Pooled last hidden states of each token sequence under `adapter` (None: base model).

    Shape (len(ids), width), float32 on the CPU. Sequences run in batches of similar
    length (right-padded; the mask keeps padding out of the pool). Gradients flow
    when the caller's mode allows them, to the adapter's parameters only (the base
    model is frozen; `adapter_scope` keeps every `requires_grad` as it was).
    """
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    body: nn.Module = getattr(inner, "base_model", inner)  # the transformer without LM head
    device = next(model.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pooled: list[torch.Tensor] = []
    with adapter_scope(model, adapter):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[r]) for r in rows)
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                batch[k, : len(ids[r])] = torch.tensor(ids[r])
                mask[k, : len(ids[r])] = 1
            hidden = body(input_ids=batch.to(device), attention_mask=mask.to(device),
                          use_cache=False).last_hidden_state.float()
            pooled.append(_pool(hidden, mask.to(device), pooling).cpu())
    if not pooled:
        return torch.zeros((0, hidden_size(model)))
    # Back to the callers' order: row order[j] is at position j of the concatenation.
    return torch.cat(pooled)[torch.argsort(torch.tensor(order))]


@torch.no_grad()
def text_features(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                  pooling: Pooling = "mean", batch_size: int = 16) -> torch.Tensor:
    """Pooled last hidden states of the base model (adapters off), detached."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return hidden_states(model, tokenise(tokenizer, texts), pooling, None, batch_size, int(pad))


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "last":
        last = mask.sum(dim=-1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
