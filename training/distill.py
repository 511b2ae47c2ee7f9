"""Policy distillation (seed §2.1.3), route one: a student matches the teacher's distributions.

The teacher (trained adapters) plays episodes; every decision it made (a message it
wrote, an action it chose) is a state to learn from. A fresh student adapter per teacher
adapter, on the same base model with the scenario's LoRA settings, is trained to
minimise KL(teacher || student) at each state:

- an action: over the legal set, as the agent draws (option scores, temperature,
  epsilon: `agents.llm.policy.action_probs`);
- a message: per position of the teacher's message, over the next token, the JSON
  Schema's mask applied to both and the message's temperature; summed over positions.
  Top-p is left out: a nucleus cut from one model's distribution can drop a token the
  other keeps, and the divergence would be infinite.

The teacher's distributions are computed once, without gradients; each epoch runs the
student over the same states. The KL is the mean over decisions (nats).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_params, adapter_scope
from agents.llm.decoding import option_totals
from agents.llm.policy import action_probs, message_logits, message_masks, schema_masked
from training.trajectory import Decision


def kl_divergence(teacher: Tensor, student: Tensor) -> Tensor:
    """KL(teacher || student) over the last dim, from log-probs; where the teacher's
    log-prob is -inf (masked) the term is 0, with no NaN in values or gradients."""
    kept = torch.isfinite(teacher)
    safe_teacher = teacher.masked_fill(~kept, 0.0)
    safe_student = student.masked_fill(~kept, 0.0)
    return (safe_teacher.exp() * kept * (safe_teacher - safe_student)).sum(dim=-1)


@dataclass(frozen=True)
class State:
    """One decision of the teacher, with what the student is scored against."""

    decision: Decision
    student: str  # the student adapter that learns this decision
    mask: Tensor | None  # a message's schema mask per position (None: unconstrained)
    teacher: Tensor  # log-probs: (options,) for an action, (tokens, vocab) for a message


def _log_distributions(model: nn.Module, states: Sequence[tuple[Decision, Tensor | None]],
                       adapter: str) -> list[Tensor]:
    """Log-probs of each decision's distribution under `adapter`, in one pass per kind."""
    out: dict[int, Tensor] = {}
    with adapter_scope(model, adapter):
        messages = [(i, d, mask) for i, (d, mask) in enumerate(states) if d.kind == "message"]
        if messages:
            logits = message_logits(model, [d.trace for _, d, _ in messages])
            for (i, d, mask), rows in zip(messages, logits, strict=True):
                out[i] = torch.log_softmax(schema_masked(rows, mask) / d.trace.temperature, -1)
        actions = [(i, d) for i, (d, _) in enumerate(states) if d.kind == "action"]
        if actions:
            totals = option_totals(model, [(d.trace.prompt_ids, d.options) for _, d in actions],
                                   pad_id=0)
            for (i, d), total in zip(actions, totals, strict=True):
                out[i] = torch.log(action_probs(total, d.trace).clamp_min(1e-300)).float()
    return [out[i] for i in range(len(states))]


def teacher_states(model: nn.Module, tokenizer: PreTrainedTokenizerBase,
                   decisions: Sequence[Decision], student_of: Callable[[str], str]
                   ) -> list[State]:
    """Each decision with its schema mask and the teacher's log-probs (its own adapter)."""
    masks = message_masks(model, [d.trace for d in decisions], tokenizer)
    states = []
    by_teacher: dict[str, list[int]] = {}
    for i, decision in enumerate(decisions):
        by_teacher.setdefault(str(decision.trace.adapter), []).append(i)
    teacher: dict[int, Tensor] = {}
    with torch.no_grad():
        for adapter, indices in by_teacher.items():
            rows = _log_distributions(model, [(decisions[i], masks[i]) for i in indices],
                                      adapter)
            teacher.update(zip(indices, rows, strict=True))
    for i, decision in enumerate(decisions):
        states.append(State(decision, student_of(str(decision.trace.adapter)), masks[i],
                            teacher[i]))
    return states


def student_kl(model: nn.Module, states: Sequence[State]) -> Tensor:
    """Mean KL(teacher || student) over `states`, with gradients into the students."""
    total = torch.zeros((), dtype=torch.float64)
    for student in sorted({s.student for s in states}):
        mine = [s for s in states if s.student == student]
        rows = _log_distributions(model, [(s.decision, s.mask) for s in mine], student)
        for state, row in zip(mine, rows, strict=True):
            total = total + kl_divergence(state.teacher, row).sum().double()
    return total / len(states)


def fit_students(model: nn.Module, states: Sequence[State], epochs: int, minibatch: int,
                 lr: float, seed: int, after_epoch: Callable[[int, float], None]) -> list[float]:
    """Adam on the students' LoRA parameters; returns the mean KL of each epoch."""
    students = sorted({s.student for s in states})
    optimiser = torch.optim.Adam(adapter_params(model, students), lr=lr, eps=1e-5)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(states), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), minibatch):
            loss = student_kl(model, [states[i] for i in order[start:start + minibatch]])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            losses.append(float(loss.detach()))
        history.append(sum(losses) / len(losses))
        after_epoch(epoch, history[-1])
    return history
