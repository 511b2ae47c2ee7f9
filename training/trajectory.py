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

An action's trace carries its legal options' token ids, so assembling needs no
tokenizer; the log-prob and entropy of a decision are `agents.llm.policy`'s.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope
from agents.llm.policy import Score, score_actions, score_messages
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
        trace: the policy trace recorded at rollout time (an action's holds the
            token ids of every legal option, in legal-set order).
        chosen: for actions, the position of the chosen action in the legal set.
    """

    kind: Literal["message", "action"]
    agent: str
    step: int
    trace: PolicyTrace
    chosen: int = 0

    @property
    def options(self) -> list[list[int]]:
        """For actions, the token ids of every legal option; [] for messages."""
        return self.trace.options or []

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


@dataclass
class _Record:
    """A rollout's envelopes, sorted by what they are (the raw material of `assemble`)."""

    observations: dict[StepKey, dict[str, Observation]] = field(
        default_factory=lambda: defaultdict(dict))
    messages: dict[StepKey, list[Envelope]] = field(default_factory=lambda: defaultdict(list))
    actions: dict[tuple[StepKey, str], Envelope] = field(default_factory=dict)
    rewards: list[tuple[StepKey, str, float]] = field(default_factory=list)
    stepped: set[StepKey] = field(default_factory=set)  # steps whose rewards are out
    episodes: list[EpisodeOutcome] = field(default_factory=list)

    def add(self, env: Envelope) -> None:
        """File one envelope; control messages and unknown kinds are no part of a trajectory."""
        key = (env.run, env.episode, env.step)
        if env.kind == "say":  # a scenario's message, whatever its model
            self.messages[key].append(env)
            return
        match env.payload:
            case Observation() as observation:
                self.observations[key][env.recipient] = observation
            case Action():
                if key not in self.stepped:  # else it came after the env stepped: not played
                    self.actions[(key, env.sender)] = env
            case Reward(reward=reward):
                self.stepped.add(key)
                self.rewards.append((key, env.recipient, reward))
            case EpisodeEnd(returns=returns, success=success):
                self.episodes.append(EpisodeOutcome(env.run, env.episode, returns, success))


def assemble(envelopes: Sequence[Envelope]) -> Trajectories:
    """Build trajectories from every envelope of a rollout (several runs may be mixed).

    Raises:
        ValueError: if an action that is a PPO sample has a trace without the legal
            options' token ids, or options that disagree with the chosen tokens.
    """
    record = _Record()
    for env in envelopes:
        record.add(env)
    # A stable order of messages (by sender), whatever order concurrent agents spoke in.
    ordered = {key: tuple(sorted(said, key=lambda e: e.sender))
               for key, said in record.messages.items()}
    joint = {key: JointStep(dict(sorted(obs.items())), ordered.get(key, ()))
             for key, obs in record.observations.items()}
    steps = _agent_steps(record, ordered)
    decisions = [d for index, step in enumerate(steps) for d in _decisions(step, index)]
    return Trajectories(steps, joint, decisions, record.episodes)


def _agent_steps(record: _Record, ordered: dict[StepKey, tuple[Envelope, ...]]
                 ) -> list[AgentStep]:
    """Every agent's steps: agents in name order, each one's steps in time order."""
    credit = _credit(record.observations, record.rewards)
    steps: list[AgentStep] = []
    for agent in sorted({agent for obs in record.observations.values() for agent in obs}):
        keys = sorted(key for key, obs in record.observations.items() if agent in obs)
        for index, key in enumerate(keys):
            last = index + 1 == len(keys) or keys[index + 1][:2] != key[:2]
            said = ordered.get(key, ())
            steps.append(AgentStep(
                agent, *key, observation=record.observations[key][agent],
                inbox=tuple(e for e in said if e.is_for(agent)),
                said=tuple(e for e in said if e.sender == agent),
                action=record.actions.get((key, agent)),
                reward=credit.get((key, agent), 0.0), done=last))
    return steps


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


def _decisions(step: AgentStep, index: int) -> list[Decision]:
    """The PPO samples of one agent-step: its sampled messages and its real choice."""
    out = [Decision("message", step.agent, index, env.trace) for env in step.said
           if env.trace is not None and env.trace.temperature > 0
           and any(logprob != 0.0 for logprob in env.trace.logprobs)]
    action = _action_decision(step, index)
    return [*out, action] if action is not None else out


def _action_decision(step: AgentStep, index: int) -> Decision | None:
    """The step's action as a PPO sample; None without a real, model-sampled choice."""
    trace = step.action.trace if step.action is not None else None
    if step.action is None or trace is None or trace.legal is None:
        return None
    if trace.policy != "sample" or len(trace.legal) < 2:
        return None
    payload = step.action.payload
    assert isinstance(payload, Action)  # `_Record` keeps only envelopes holding an Action
    chosen = trace.legal.index(payload.action)
    where = f"{step.agent} at {step.key}"
    if trace.options is None:
        raise ValueError(f"{where}: the action's PolicyTrace records no `options` (the legal "
                         "options' token ids); re-record the rollout with a current LLMAgent")
    if len(trace.options) != len(trace.legal) or trace.options[chosen] != trace.token_ids:
        raise ValueError(f"{where}: the chosen action's tokens differ from its trace's options")
    return Decision("action", step.agent, index, trace, chosen)


def score(
    model: torch.nn.Module,
    decision: Decision,
    tokenizer: PreTrainedTokenizerBase,
    adapter: str | None,
) -> Score:
    """Log-prob of `decision` under `adapter` (None: the base model) and its entropy.

    The distribution is the one the decision was sampled from, as
    `agents.llm.policy` defines it (its docstring says how, entropy included).
    Differentiable when grads are on.

    Returns:
        (log-prob, entropy), float64 0-dim tensors.
    """
    return score_batch(model, [decision], tokenizer, adapter)[0]


def score_batch(
    model: torch.nn.Module,
    decisions: Sequence[Decision],
    tokenizer: PreTrainedTokenizerBase,
    adapter: str | None,
) -> list[Score]:
    """`score` of several decisions under one adapter, in two batched forward passes.

    All actions' prompts run as one batch (their options share each prompt's KV
    cache), all messages as another; one batched pass costs far less than one
    pass per decision on a CPU, whose matrix kernels idle on one short sequence.
    """
    actions = [d for d in decisions if d.kind == "action"]
    messages = [d for d in decisions if d.kind == "message"]
    with adapter_scope(model, adapter):
        scores = score_actions(model, [(d.trace, d.chosen) for d in actions])
        scores += [s.total() for s in score_messages(model, [d.trace for d in messages],
                                                     tokenizer)]
    scored = {id(d): s for d, s in zip([*actions, *messages], scores, strict=True)}
    return [scored[id(d)] for d in decisions]
