"""Batched incremental decoding and option scoring: the engine's model-side loops.

The engine runs both synchronously in its worker thread, under inference mode,
with one adapter active; the trainer reruns `forward` and `option_totals` with
gradients (`agents.llm.policy`), so that both sides compute the same numbers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr
from torch import nn
from transformers import LlamaForCausalLM

from agents.llm.grammar import SchemaGrammar
from agents.llm.jobs import GenerationRequest
from agents.llm.sampling import sampling_logprobs

# transformers 5.x renamed the KV-cache argument and output field `past_key_values` to `cache`.
_CACHE_ARG = (
    "cache"
    if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters
    else "past_key_values"
)


@dataclass
class GenerationRow:
    """One sequence being decoded."""

    request: GenerationRequest
    generator: torch.Generator
    index: int
    stop_ids: tuple[int, ...]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    matcher: xgr.GrammarMatcher | None = None
    forced: list[int] = field(default_factory=list)  # tokens the schema leaves no choice on
    finished: bool = False
    done: bool = False

    def append(self, token: int, logprob: float) -> None:
        """Record a token and decide whether the row is done."""
        self.tokens.append(token)
        self.logprobs.append(logprob)
        if self.matcher is not None and not self.matcher.accept_token(token):
            raise RuntimeError(f"sampled token {token} was rejected by the grammar")
        if token in self.stop_ids:
            self.finished = self.done = True
        elif len(self.tokens) >= self.request.max_new_tokens:
            self.done = True
            self.finished = self.matcher is not None and self.matcher.is_completed()


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded on the left to the longest sequence."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def forward(
    model: nn.Module,
    ids: torch.Tensor,
    attention: torch.Tensor,
    cache: Any,
    logits_to_keep: int = 1,
) -> tuple[torch.Tensor, Any]:
    """Run `ids` (appended after `cache`) and return float32 logits and the cache.

    Positions count real tokens only, so a left-padded row sees the same
    positions as it would alone.
    """
    positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    out = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=logits_to_keep,
        **{_CACHE_ARG: cache},
    )
    return out.logits.float(), getattr(out, _CACHE_ARG)


def decode_rows(
    model: nn.Module,
    rows: list[GenerationRow],
    *,
    pad_id: int,
    grammar: SchemaGrammar | None,
    on_done: Callable[[GenerationRow], None],
) -> None:
    """Decode all rows together; finished rows leave the batch and go to `on_done`."""
    device = next(model.parameters()).device
    for row in rows:
        if row.request.json_schema is not None:
            assert grammar is not None
            row.matcher = grammar.matcher(row.request.json_schema)
            row.forced = grammar.forced_tokens(row.matcher)
    ids, attention = left_pad([row.request.prompt_ids for row in rows], pad_id, device)
    logits, cache = forward(model, ids, attention, None)
    active = list(rows)
    while True:
        _choose(active, logits[:, -1], grammar)
        keep = [k for k, row in enumerate(active) if not row.done]
        for row in active:
            if row.done:
                on_done(row)
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attention = attention[index]
            active = [active[k] for k in keep]
        step = torch.tensor([[row.tokens[-1]] for row in active], device=device)
        attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
        logits, cache = forward(model, step, attention, cache)


def _choose(
    rows: list[GenerationRow],
    logits: torch.Tensor,
    grammar: SchemaGrammar | None,
) -> None:
    """Pick each row's next token from its (masked, tempered, nucleus) distribution.

    A row with forced tokens (text the schema allows as the only continuation)
    takes the next one without sampling, with log-prob 0.
    """
    constrained = [k for k, row in enumerate(rows) if row.matcher is not None and not row.forced]
    if constrained:
        assert grammar is not None
        bitmask = grammar.new_bitmask(len(rows))
        for k in constrained:
            matcher = rows[k].matcher
            assert matcher is not None
            matcher.fill_next_token_bitmask(bitmask, k)
        xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=constrained)
    temperature = torch.tensor([[row.request.temperature] for row in rows], device=logits.device)
    top_p = torch.tensor([[row.request.top_p] for row in rows], device=logits.device)
    logprobs = sampling_logprobs(logits, temperature, top_p)
    tokens = logprobs.argmax(dim=-1)
    for k, row in enumerate(rows):
        if row.request.temperature > 0 and not row.forced:
            probs = logprobs[k].exp()
            tokens[k] = torch.multinomial(probs, 1, generator=row.generator)[0]
    chosen = logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    for row, token, logprob in zip(rows, tokens.tolist(), chosen.tolist(), strict=True):
        if row.forced:
            token, logprob = row.forced.pop(0), 0.0
        row.append(token, logprob)
        _force_stop(row, grammar)
        if not row.done and not row.forced and row.matcher is not None and grammar is not None:
            row.forced = grammar.forced_tokens(row.matcher)


def _force_stop(row: GenerationRow, grammar: SchemaGrammar | None) -> None:
    """Append the stop token without a model call when a complete schema allows only it.

    That step is deterministic (log-prob 0), so skipping the forward pass is exact.
    """
    if row.done or row.matcher is None or grammar is None:
        return
    stop = grammar.forced_stop(row.matcher)
    if stop is not None:
        row.append(stop, 0.0)


def score_rows(
    model: nn.Module, work: list[tuple[list[int], list[list[int]]]], pad_id: int
) -> list[list[float]]:
    """Total log-likelihood of each option after its prompt, for several prompts at once."""
    return [totals.tolist() for totals in option_totals(model, work, pad_id)]


def option_totals(
    model: nn.Module, work: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int
) -> list[torch.Tensor]:
    """Per prompt, the summed token log-probs of each of its options (float64, with grads).

    The prompts run once (left-padded batch) with a KV cache; the cache rows are
    then repeated once per option and all options run as one right-padded batch.
    The engine scores with this under inference mode; the trainer with gradients.
    """
    device = next(model.parameters()).device
    ids, attention = left_pad([prompt for prompt, _ in work], pad_id, device)
    logits, cache = forward(model, ids, attention, None)
    first = torch.log_softmax(logits[:, -1], dim=-1)
    owner = [p for p, (_, options) in enumerate(work) for _ in options]
    options = [option for _, opts in work for option in opts]
    index = torch.tensor(owner, device=device)
    heads = torch.tensor([option[0] for option in options], device=device)
    totals = first[index, heads].double()
    longest = max(len(option) for option in options)
    if longest > 1:
        cache.batch_select_indices(index)
        tail_ids = torch.full((len(options), longest - 1), pad_id, dtype=torch.long)
        tail_mask = torch.zeros_like(tail_ids)
        targets = torch.zeros_like(tail_ids)
        for row, option in enumerate(options):
            tail_ids[row, : len(option) - 1] = torch.tensor(list(option[:-1]))
            tail_mask[row, : len(option) - 1] = 1
            targets[row, : len(option) - 1] = torch.tensor(list(option[1:]))
        tail_ids, tail_mask, targets = tail_ids.to(device), tail_mask.to(device), targets.to(device)
        mask = torch.cat([attention[index], tail_mask], dim=-1)
        tail_logits, _ = forward(model, tail_ids, mask, cache, logits_to_keep=0)
        picked = torch.log_softmax(tail_logits, dim=-1).gather(-1, targets[..., None])[..., 0]
        # Summed in float32, then added in float64: the engine's numbers, bit for bit.
        totals = totals + (picked * tail_mask).sum(dim=-1).double()
    return list(torch.split(totals, [len(opts) for _, opts in work]))
