"""The action distribution over a legal set: what the agent samples an action from.

An action is chosen by scoring each legal action's name, followed by the end of
turn token, as a continuation of the action prompt: the score of an option is
the mean of its tokens' log-probs (`per_token`). The policy is then

    p = (1 - epsilon) * softmax(scores / temperature) + epsilon / |legal|

At rollout time the agent gets the token totals from
`InferenceEngine.score_options` (batched, no gradients) and samples from
`action_distribution`; at update time `agents.llm.policy.score_actions`
recomputes the totals with gradients and puts them through the same two
functions, so both sides compute the log-prob of the very distribution the
action was sampled from.

With UCB (the agent's `ucb` option, for repeated games) the softmax is replaced
by a point mass on the legal action with the highest UCB1 score (untried actions
first, ties broken by the model's scores), still mixed with epsilon. The trace
records the log-prob of that distribution (0 when epsilon is 0); it depends on
the agent's reward statistics, not on the weights, so a trainer cannot recompute
it from the model and must treat UCB steps as off-policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from agents.llm.exploration import mix_uniform, one_hot


def action_options(
    tokenizer: PreTrainedTokenizerBase, action_names: Sequence[str], legal: Sequence[int]
) -> list[list[int]]:
    """Token ids of each legal action's name, each ending with the end-of-turn token.

    The end token makes the options complete answers: without it an action whose
    name is a prefix of another's ("go" and "go_left") would be scored unfairly.

    Args:
        tokenizer: the model's tokenizer.
        action_names: the name of every action, by index (`Observation.action_names`).
        legal: the legal action indices, in the order the options are wanted.
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

    Args:
        totals: summed token log-probs of each option (the engine's floats, or a
            tensor that may carry gradients).
        options: the options' token ids, in the same order.
    """
    # float64 from the start: the engine's totals are float64, and rounding them to
    # float32 here would make the agent's scores differ from the trainer's.
    scores = (totals if isinstance(totals, torch.Tensor)
              else torch.tensor(list(totals), dtype=torch.float64))
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
