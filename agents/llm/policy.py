"""The log-prob and entropy of a decision: the one definition, for the trainer and the tests.

A decision is a message the model wrote or an action it chose, recorded as a
`PolicyTrace`. Its log-prob is that of the distribution it was drawn from at
rollout time, rebuilt from the very functions the samplers draw with:

- a message: per token, the model's logits masked by the JSON Schema (the
  grammar replayed over the sampled tokens), tempered and cut to the top-p
  nucleus (`sampling_logprobs`, as the engine's sampler); its log-prob is the
  sum over its tokens;
- an action: the mean token log-prob of each legal option (`per_token`), then
  the tempered, epsilon-mixed softmax (`action_distribution`, as the agent).

Entropy is exact for an action's option distribution. For a message it is the
sum over its positions of the exact entropy of each next-token distribution
along the sampled path: by the chain rule its expectation is the message
distribution's entropy, and unlike -log p of the sample its gradient does push
the policy towards spreading mass (positions the schema forces add 0).

`token_scores` and `action_score` work from logits or option totals the caller
already has; `score_messages` and `score_actions` run the model, in one batched
forward pass for all messages and one for all actions, under whichever adapter
is active (the caller's `adapter_scope`). All are differentiable when
gradients are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from agents.llm.actions import action_distribution, per_token
from agents.llm.decoding import forward, left_pad, option_totals
from agents.llm.grammar import SchemaGrammar, schema_grammar
from agents.llm.sampling import logits_width, sampling_logprobs, stop_token_ids
from protocols import PolicyTrace


class Score(NamedTuple):
    """Log-prob and entropy of one decision: float64 0-dim tensors."""

    logprob: Tensor
    entropy: Tensor


class TokenScores(NamedTuple):
    """A message's scores per position: float32 vectors, one entry per generated token.

    Attributes:
        logprobs: log-prob of each sampled token under its sampling distribution
            (what the engine recorded in `Generation.logprobs`).
        entropies: exact entropy of each position's sampling distribution.
    """

    logprobs: Tensor
    entropies: Tensor

    def total(self) -> Score:
        """The message's score: log-probs and entropies summed over its tokens."""
        return Score(self.logprobs.sum().double(), self.entropies.sum().double())


def recorded_options(trace: PolicyTrace) -> list[list[int]]:
    """The legal options' token ids an action trace recorded, in legal-set order.

    Raises:
        ValueError: if the trace has no options (not an action's trace, or one
            recorded before `PolicyTrace.options` existed), or an empty option.
    """
    if trace.options is None:
        raise ValueError("the action's PolicyTrace records no `options` (the legal options' "
                         "token ids); re-record the rollout with a current LLMAgent")
    if not trace.options or any(len(option) == 0 for option in trace.options):
        raise ValueError("every option needs at least one token")
    return trace.options


def action_score(totals: Tensor, trace: PolicyTrace, chosen: int) -> Score:
    """Log-prob of the chosen action and exact entropy of the distribution it came from.

    Args:
        totals: summed token log-probs of each legal option after the prompt
            (`option_totals`), in legal-set order; gradients flow through.
        trace: the action's trace: its options, temperature and epsilon.
        chosen: position of the chosen action in the legal set.
    """
    probs = action_probs(totals, trace)
    # The clamp keeps 0 * log 0 at 0 with a finite gradient (greedy's one-hot).
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum()
    return Score(torch.log(probs[chosen]), entropy)


def action_probs(totals: Tensor, trace: PolicyTrace) -> Tensor:
    """The distribution over the legal set an action was drawn from, as the agent drew it:
    each option's mean token log-prob, then the tempered, epsilon-mixed softmax."""
    scores = per_token(totals, recorded_options(trace))  # as the agent compares options
    return action_distribution(scores, trace.temperature, trace.epsilon)


def token_scores(logits: Tensor, trace: PolicyTrace, allowed: Tensor | None) -> TokenScores:
    """Per-position scores of the message `trace` records, from the logits that predicted it.

    Args:
        logits: (tokens, vocab) logits; row i predicted `trace.token_ids[i]`.
        trace: the message's trace: its tokens, temperature and top-p.
        allowed: (tokens, vocab) bool mask of what the JSON Schema allowed at each
            position (`SchemaGrammar.replay_masks`); None when unconstrained.
    """
    logits = schema_masked(logits, allowed)
    targets = torch.tensor(trace.token_ids, device=logits.device)
    # `keep`: a rounding difference at the nucleus edge cannot cut a sampled token.
    logprobs = sampling_logprobs(logits, trace.temperature, trace.top_p, keep=targets)
    picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
    # Masked-out tokens have log-prob -inf and probability 0: they add 0 (and no NaN).
    safe = logprobs.masked_fill(~torch.isfinite(logprobs), 0.0)
    return TokenScores(picked, -(logprobs.exp() * safe).sum(dim=-1))


def schema_masked(logits: Tensor, allowed: Tensor | None) -> Tensor:
    """`logits` with what the JSON Schema forbade at each position set to -inf."""
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def message_masks(model: nn.Module, traces: Sequence[PolicyTrace],
                  tokenizer: PreTrainedTokenizerBase) -> list[Tensor | None]:
    """Per message, what its schema allowed at each position (None: unconstrained)."""
    grammar: SchemaGrammar | None = None
    masks: list[Tensor | None] = []
    for trace in traces:
        if trace.constraint is None:
            masks.append(None)
            continue
        grammar = grammar or schema_grammar(tokenizer, logits_width(model),
                                            stop_token_ids(model, tokenizer))
        masks.append(grammar.replay_masks(trace.constraint, trace.token_ids))
    return masks


def message_logits(model: nn.Module, traces: Sequence[PolicyTrace]) -> list[Tensor]:
    """Per message, the (tokens, vocab) float32 logits that predicted its tokens: one pass.

    Left padding lines every row's last tokens up, so the logits of the longest
    message's length cover every row's tokens.

    Raises:
        ValueError: if a trace has no prompt or no generated token.
    """
    if any(not t.prompt_ids or not t.token_ids for t in traces):
        raise ValueError("a message needs a non-empty prompt and at least one token")
    device = next(model.parameters()).device
    ids, attention = left_pad([t.prompt_ids + t.token_ids[:-1] for t in traces], 0, device)
    longest = max(len(t.token_ids) for t in traces)
    logits, _ = forward(model, ids, attention, None, logits_to_keep=longest)
    return [logits[row, longest - len(t.token_ids) :] for row, t in enumerate(traces)]


def score_messages(
    model: nn.Module, traces: Sequence[PolicyTrace], tokenizer: PreTrainedTokenizerBase
) -> list[TokenScores]:
    """`token_scores` of each message under the model as it is: one batched forward pass.

    Args:
        model: the causal LM, its adapter already chosen by the caller.
        traces: the messages' traces (constrained ones are replayed through their
            schema's grammar to rebuild each position's mask).
        tokenizer: the model's tokenizer (the grammar is built from it).
    """
    if not traces:
        return []
    return [token_scores(logits, trace, allowed) for trace, logits, allowed in zip(
        traces, message_logits(model, traces), message_masks(model, traces, tokenizer),
        strict=True)]


def score_actions(model: nn.Module, choices: Sequence[tuple[PolicyTrace, int]]) -> list[Score]:
    """`action_score` of each (trace, chosen position) under the model as it is.

    One batched forward pass: every prompt runs once and its options share its
    KV cache (`option_totals`, the engine's own scoring).
    """
    if not choices:
        return []
    work = [(trace.prompt_ids, recorded_options(trace)) for trace, _ in choices]
    totals = option_totals(model, work, pad_id=0)
    return [action_score(total, trace, chosen)
            for total, (trace, chosen) in zip(totals, choices, strict=True)]
