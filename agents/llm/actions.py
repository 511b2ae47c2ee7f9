"""Exact action distributions over a legal set, shared by the agent and the trainer.

An action is chosen by scoring each legal action's name, followed by the end of
turn token, as a continuation of the action prompt: the score of an option is
the sum of its tokens' log-probs. The policy is then

    p = (1 - epsilon) * softmax(scores / temperature) + epsilon / |legal|

At rollout time the agent gets the scores from `InferenceEngine.score_options`
(batched, no gradients); at update time the trainer recomputes them with
`option_scores` (the same computation, with gradients) and calls
`action_logprob`, so both sides compute the log-prob of the very distribution
the action was sampled from.

With UCB (the agent's `ucb` option, for repeated games) the softmax is replaced
by a point mass on the legal action with the highest UCB1 score (untried actions
first, ties broken by the model's scores), still mixed with epsilon. The trace
records the log-prob of that distribution (0 when epsilon is 0); it depends on
the agent's reward statistics, not on the weights, so a trainer cannot recompute
it with `action_logprob` and must treat UCB steps as off-policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope
from agents.llm.decoding import option_totals
from agents.llm.exploration import mix_uniform, one_hot


def action_options(
    tokenizer: PreTrainedTokenizerBase, action_names: Sequence[str], legal: Sequence[int]
) -> list[list[int]]:
    """Token ids of each legal action's name, each ending with the end-of-turn token.

    The end token makes the options complete answers: without it an action whose
    name is a prefix of another's ("go" and "go_left") would be scored unfairly.
    """
    end = tokenizer.eos_token_id
    suffix = [end] if isinstance(end, int) else []
    options = []
    for index in legal:
        ids = tokenizer(action_names[index], add_special_tokens=False)["input_ids"]
        options.append([int(i) for i in ids] + suffix)
    return options


def per_token(
    totals: Sequence[float] | torch.Tensor, options: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Each option's mean token log-prob: the score actions are compared by (float64).

    Summed log-probs would favour short names ("walk away" over "take 2 books 1 hat
    0 balls") whatever the model thinks of them; the mean does not.
    """
    scores = totals if isinstance(totals, torch.Tensor) else torch.tensor(list(totals))
    lengths = torch.tensor([len(option) for option in options], dtype=torch.float64)
    return scores.to(torch.float64) / lengths.to(scores.device)


def action_distribution(
    option_scores: Sequence[float] | torch.Tensor, temperature: float, epsilon: float
) -> torch.Tensor:
    """The probabilities of the legal options the agent samples from (float64).

    Args:
        option_scores: log-likelihood score of each legal option (a tensor may
            carry gradients; they flow through).
        temperature: softmax temperature; 0 means greedy (all mass on the first
            highest score) before the epsilon mixture.
        epsilon: weight of the uniform distribution over the legal set.
    """
    if isinstance(option_scores, torch.Tensor):
        scores = option_scores.to(torch.float64)
    else:
        scores = torch.tensor(list(option_scores), dtype=torch.float64)
    if scores.ndim != 1 or scores.numel() == 0:
        raise ValueError("option_scores must be a non-empty vector")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        base = one_hot(int(torch.argmax(scores.detach())), scores.numel()).to(scores.device)
    else:
        base = torch.softmax(scores / temperature, dim=-1)
    return mix_uniform(base, epsilon)


def option_scores(
    model: torch.nn.Module, prompt_ids: Sequence[int], options: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Sum of token log-probs of each option after the prompt, with gradients (float64).

    The same computation as the engine's batched scoring (`option_totals`) for one
    prompt: the prompt runs once and its KV cache is shared by all options.
    """
    if not options or any(len(option) == 0 for option in options):
        raise ValueError("every option needs at least one token")
    return option_totals(model, [(prompt_ids, options)], pad_id=0)[0]


def action_logprob(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    options: Sequence[Sequence[int]],
    chosen: int,
    *,
    temperature: float,
    epsilon: float,
    adapter: str | None = None,
) -> torch.Tensor:
    """Log-prob of option `chosen` under the current weights, differentiable.

    This is what the trainer calls to recompute a recorded action log-prob
    (`PolicyTrace.logprobs[0]` of an action) from the model.

    Args:
        model: the causal LM (a PeftModel when adapters are in play).
        prompt_ids: `PolicyTrace.prompt_ids` of the action.
        options: token ids of every legal option, in legal-set order
            (`action_options(tokenizer, observation.action_names, trace.legal)`).
        chosen: position of the chosen action in the legal set.
        temperature: the agent's `action_temperature` (`PolicyTrace.temperature`).
        epsilon: the agent's `epsilon`.
        adapter: `PolicyTrace.adapter`: the LoRA adapter to score under; None
            scores under the base model (adapters disabled).

    Returns:
        A 0-dim float64 tensor.
    """
    with adapter_scope(model, adapter):
        scores = per_token(option_scores(model, prompt_ids, options), options)
    probs = action_distribution(scores, temperature, epsilon)
    return torch.log(probs[chosen])
