"""The token sampling distribution, shared by the engine (rollouts) and the trainer (updates).

PPO needs the log-prob of each token under the distribution it was actually
drawn from: the model's logits, restricted by the JSON-Schema mask, divided by
the temperature and cut to the top-p nucleus. `sampling_logprobs` is that one
definition: the engine samples from it, and `agents.llm.policy` recomputes a
whole message's log-prob and entropy with it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase


def sampling_logprobs(
    logits: torch.Tensor,
    temperature: torch.Tensor | float,
    top_p: torch.Tensor | float,
    *,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probs of the distribution tokens are sampled from, shape like `logits`.

    Args:
        logits: (rows, vocab) logits, with banned tokens already at -inf.
        temperature: per row (rows, 1) or scalar; 0 means greedy, whose log-probs
            are those of temperature 1 (a point mass would carry no information).
        top_p: per row (rows, 1) or scalar nucleus mass; 1 keeps everything.
        keep: optional (rows,) token ids never cut by top-p (the trainer passes the
            tokens actually sampled, so a rounding difference at the nucleus edge
            cannot turn a log-prob into -inf).
    """
    temperature = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device)
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=logits.device)
    scale = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    scaled = logits.float() / scale
    if bool((top_p < 1).any()):
        scaled = scaled.masked_fill(_outside_nucleus(scaled.detach(), top_p, keep), float("-inf"))
    return torch.log_softmax(scaled, dim=-1)


def _outside_nucleus(
    scaled: torch.Tensor, top_p: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """Tokens outside the top-p nucleus (transformers' TopPLogitsWarper rule)."""
    ascending, order = torch.sort(scaled, dim=-1)
    mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)
    cut = mass_below <= (1 - top_p).reshape(-1, 1)
    cut[..., -1] = False  # the most likely token always stays
    outside = cut.scatter(-1, order, cut)
    if keep is not None:
        outside[torch.arange(len(keep), device=keep.device), keep] = False
    return outside


def stop_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Tokens that end a generation: the tokenizer's EOS and the model's EOS ids."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list):
        ids.update(int(i) for i in configured)
    return sorted(ids)


def logits_width(model: nn.Module) -> int:
    """The model's true vocabulary size: the width of its output layer."""
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if not isinstance(output, nn.Linear):
        raise TypeError(f"{type(model).__name__} has no linear output layer")
    return int(output.weight.shape[0])
