"""Trajectories assembled from a rollout's envelopes, and the log-prob of each decision.

Everything the trainer learns from comes off the bus:

- per agent and step (`AgentStep`): its Observation, its inbox (messages to it
  or to all), the Say envelopes it sent, its Action, its reward, and whether the
  episode ended after the step;
- per step (`JointStep`): every agent's observation and every message: the
  joint view the central critic reads;
- `Decision`s, the PPO samples: one per generated message and one per action
  that had a real choice. Single-legal-action steps carry no gradient, UCB
  choices are not the model's (not on-policy), and greedy messages have no
  sampling distribution: none of them is a sample.

An action published after its step's first Reward came too late: the runner
played its default action instead, so it is no sample. (This relies on the
publish order of one in-process bus, which is what rollouts use.)

A reward reaches the agent's latest step at or before the reward's step (AEC
games pay agents while others move). An episode's last step is `done` whether
the game ended or the runner cut it at `max_steps` (no bootstrapping).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from agents.llm.actions import action_distribution, action_options, per_token
from agents.llm.adapters import adapter_scope
from agents.llm.decoding import forward, left_pad, option_totals
from agents.llm.grammar import schema_grammar
from agents.llm.sampling import logits_width, sampling_logprobs, stop_token_ids
from protocols import Action, Envelope, EpisodeEnd, Observation, PolicyTrace, Reward

StepKey = tuple[str, int, int]  # run, episode, step


@dataclass(frozen=True)
class AgentStep:
    """One agent's part in one step."""

    agent: str
    run: str
    episode: int
    step: int
    observation: Observation
    inbox: tuple[Envelope, ...]
    said: tuple[Envelope, ...]
    action: Envelope | None
    reward: float
    done: bool

    @property
    def key(self) -> StepKey:
        return (self.run, self.episode, self.step)


@dataclass(frozen=True)
class JointStep:
    """The whole record of one step: every observation and every message."""

    observations: dict[str, Observation]
    messages: tuple[Envelope, ...]


@dataclass(frozen=True)
class Decision:
    """One PPO sample: a message the model wrote or an action it chose.

    Attributes:
        kind: message or action.
        agent: who decided.
        step: index of the decision's AgentStep in `Trajectories.steps`.
        trace: the policy trace recorded at rollout time.
        options: for actions, the token ids of every legal option (legal-set order).
        chosen: for actions, the position of the chosen action in the legal set.
    """

    kind: Literal["message", "action"]
    agent: str
    step: int
    trace: PolicyTrace
    options: tuple[tuple[int, ...], ...] = ()
    chosen: int = 0

    @property
    def rollout_logprob(self) -> float:
        """Log-prob at rollout time (a message's is the sum over its tokens)."""
        return float(sum(self.trace.logprobs))

    @property
    def tokens(self) -> int:
        """Tokens a forward pass over this decision reads."""
        return len(self.trace.prompt_ids) + (
            len(self.trace.token_ids) if self.kind == "message"
            else sum(len(option) for option in self.options))


@dataclass(frozen=True)
class EpisodeOutcome:
    """An episode's end as announced on the bus."""

    run: str
    episode: int
    returns: dict[str, float]
    success: bool | None


@dataclass(frozen=True)
class Trajectories:
    """A rollout, assembled.

    `steps` are grouped by agent (agents in name order), each agent's in time
    order (run, episode, step), so one agent's slice is one GAE stream.
    """

    steps: list[AgentStep]
    joint: dict[StepKey, JointStep]
    decisions: list[Decision]
    episodes: list[EpisodeOutcome]

    def joint_of(self, step: AgentStep) -> JointStep:
        """The joint record of the step `step` belongs to."""
        return self.joint[step.key]


def assemble(envelopes: Sequence[Envelope], tokenizer: PreTrainedTokenizerBase) -> Trajectories:
    """Build trajectories from every envelope of a rollout (several runs may be mixed)."""
    observations: dict[StepKey, dict[str, Observation]] = defaultdict(dict)
    messages: dict[StepKey, list[Envelope]] = defaultdict(list)
    actions: dict[tuple[StepKey, str], Envelope] = {}
    rewards: list[tuple[StepKey, str, float]] = []
    stepped: set[StepKey] = set()  # steps whose rewards are out: the env has stepped
    episodes: list[EpisodeOutcome] = []
    for env in envelopes:
        key = (env.run, env.episode, env.step)
        if env.kind == "observation":
            observations[key][env.recipient] = Observation.model_validate(env.payload)
        elif env.kind == "say":
            messages[key].append(env)
        elif env.kind == "action":
            if key not in stepped:  # else it came after the env stepped: late, not played
                actions[(key, env.sender)] = env
        elif env.kind == "reward":
            stepped.add(key)
            rewards.append((key, env.recipient, Reward.model_validate(env.payload).reward))
        elif env.kind == "episode_end":
            end = EpisodeEnd.model_validate(env.payload)
            episodes.append(EpisodeOutcome(env.run, env.episode, end.returns, end.success))
    # A stable order of messages (by sender), whatever order concurrent agents spoke in.
    ordered = {key: tuple(sorted(said, key=lambda e: e.sender)) for key, said in messages.items()}
    joint = {key: JointStep(dict(sorted(obs.items())), ordered.get(key, ()))
             for key, obs in observations.items()}
    credit = _credit(observations, rewards)
    steps: list[AgentStep] = []
    agents = sorted({agent for obs in observations.values() for agent in obs})
    for agent in agents:
        keys = sorted(key for key, obs in observations.items() if agent in obs)
        for index, key in enumerate(keys):
            last = index + 1 == len(keys) or keys[index + 1][:2] != key[:2]
            said = ordered.get(key, ())
            steps.append(AgentStep(
                agent, *key, observation=observations[key][agent],
                inbox=tuple(e for e in said if e.is_for(agent)),
                said=tuple(e for e in said if e.sender == agent),
                action=actions.get((key, agent)), reward=credit.get((key, agent), 0.0),
                done=last))
    decisions = [d for index, step in enumerate(steps)
                 for d in _decisions(step, index, tokenizer)]
    return Trajectories(steps, joint, decisions, episodes)


def _credit(
    observations: dict[StepKey, dict[str, Observation]],
    rewards: list[tuple[StepKey, str, float]],
) -> dict[tuple[StepKey, str], float]:
    """Each reward summed onto the agent's latest step at or before it (else its first)."""
    acted: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for (run, episode, step), obs in observations.items():
        for agent in obs:
            acted[(run, episode, agent)].append(step)
    credit: dict[tuple[StepKey, str], float] = defaultdict(float)
    for (run, episode, step), agent, reward in rewards:
        own = sorted(acted.get((run, episode, agent), []))
        if not own:
            continue  # paid in an episode it never observed: no step to credit
        at = own[max(bisect.bisect_right(own, step) - 1, 0)]
        credit[((run, episode, at), agent)] += reward
    return credit


def _decisions(
    step: AgentStep, index: int, tokenizer: PreTrainedTokenizerBase
) -> list[Decision]:
    """The PPO samples of one agent-step: its sampled messages and its real choice."""
    out = [Decision("message", step.agent, index, env.trace) for env in step.said
           if env.trace is not None and env.trace.temperature > 0
           and any(logprob != 0.0 for logprob in env.trace.logprobs)]
    trace = step.action.trace if step.action is not None else None
    if step.action is None or trace is None or trace.legal is None:
        return out
    if trace.policy != "sample" or len(trace.legal) < 2:
        return out
    action = Action.model_validate(step.action.payload).action
    options = action_options(tokenizer, step.observation.action_names, trace.legal)
    chosen = trace.legal.index(action)
    if options[chosen] != trace.token_ids:
        raise ValueError(f"{step.agent} at {step.key}: the chosen action's tokens differ from "
                         "its trace; was the rollout made with another tokenizer?")
    out.append(Decision("action", step.agent, index, trace,
                        tuple(tuple(option) for option in options), chosen))
    return out


def score(
    model: torch.nn.Module,
    decision: Decision,
    tokenizer: PreTrainedTokenizerBase,
    adapter: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of `decision` under `adapter` (None: the base model) and its entropy.

    The distribution is the one the decision was sampled from: for an action, the
    tempered, epsilon-mixed softmax of the legal options' per-token scores (the
    computation of `action_logprob`, which gives the log-prob only); for a
    message, each token's JSON-Schema-masked, tempered, top-p distribution (as
    `sequence_logprobs`). Differentiable when grads are on.

    Entropy: exact for an action's option distribution. For a message, the sum
    over its positions of the exact entropy of each next-token distribution along
    the sampled path; by the chain rule its expectation is the message
    distribution's entropy, and unlike -log p of the sample its gradient does
    push the policy towards spreading mass (positions the schema forces add 0).

    Returns:
        (log-prob, entropy), float64 0-dim tensors.
    """
    return score_batch(model, [decision], tokenizer, adapter)[0]


def score_batch(
    model: torch.nn.Module,
    decisions: Sequence[Decision],
    tokenizer: PreTrainedTokenizerBase,
    adapter: str | None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`score` of several decisions under one adapter, in two batched forward passes.

    All actions' prompts run as one batch (their options share each prompt's KV
    cache), all messages as another; one batched pass costs far less than one
    pass per decision on a CPU, whose matrix kernels idle on one short sequence.
    """
    actions = [d for d in decisions if d.kind == "action"]
    messages = [d for d in decisions if d.kind == "message"]
    scored: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    with adapter_scope(model, adapter):
        if actions:
            totals = option_totals(model, [(d.trace.prompt_ids, d.options) for d in actions], 0)
            for decision, total in zip(actions, totals, strict=True):
                scored[id(decision)] = _action_score(decision, total)
        if messages:
            for decision, logprobs in zip(messages, _token_logprobs(model, messages, tokenizer),
                                          strict=True):
                scored[id(decision)] = _message_score(decision, logprobs)
    return [scored[id(d)] for d in decisions]


def _action_score(decision: Decision, totals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = per_token(totals, decision.options)  # as the agent compares options
    probs = action_distribution(scores, decision.trace.temperature, decision.trace.epsilon)
    # The clamp keeps 0 * log 0 at 0 with a finite gradient (greedy's one-hot).
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum()
    return torch.log(probs[decision.chosen]), entropy


def _message_score(decision: Decision, logprobs: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.tensor(decision.trace.token_ids, device=logprobs.device)
    picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
    # Masked-out tokens have log-prob -inf and probability 0: they add 0 (and no NaN).
    safe = logprobs.masked_fill(~torch.isfinite(logprobs), 0.0)
    entropy = -(logprobs.exp() * safe).sum()
    return picked.sum().double(), entropy.double()


def message_logits(model: torch.nn.Module, traces: Sequence[PolicyTrace]) -> list[torch.Tensor]:
    """Per message, the (tokens, vocab) logits that predicted its tokens: one batched pass.

    Left padding lines every row's last tokens up, so the logits of the longest
    message's length cover every row's tokens.
    """
    device = next(model.parameters()).device
    ids, attention = left_pad([t.prompt_ids + t.token_ids[:-1] for t in traces], 0, device)
    longest = max(len(t.token_ids) for t in traces)
    logits, _ = forward(model, ids, attention, None, logits_to_keep=longest)
    return [logits[row, longest - len(t.token_ids):] for row, t in enumerate(traces)]


def _token_logprobs(
    model: torch.nn.Module, messages: Sequence[Decision], tokenizer: PreTrainedTokenizerBase,
) -> list[torch.Tensor]:
    """Per message, (tokens, vocab) log-probs of each position's sampling distribution."""
    device = next(model.parameters()).device
    traces = [d.trace for d in messages]
    grammar = None
    out = []
    for trace, own in zip(traces, message_logits(model, traces), strict=True):
        tokens = trace.token_ids
        if trace.constraint is not None:
            grammar = grammar or schema_grammar(tokenizer, logits_width(model),
                                                stop_token_ids(model, tokenizer))
            allowed = grammar.replay_masks(trace.constraint, tokens).to(device)
            own = own.masked_fill(~allowed, float("-inf"))
        keep = torch.tensor(tokens, device=device)
        out.append(sampling_logprobs(own, trace.temperature, trace.top_p, keep=keep))
    return out
