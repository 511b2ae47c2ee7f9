"""The critic: what it reads, where its gradient goes, what it can fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope, attach_adapters
from agents.llm.loading import load_model
from agents.model import ModelConfig
from protocols import Message, Observation, seal
from training.config import PPOConfig
from training.critic import Critic, CriticRows, critic_text
from training.gae import explained_variance
from training.hidden import hidden_size, text_features, tokenise
from training.trajectory import assemble

TEXTS = ["agent: speaker\nobservation of speaker: the red one",
         "agent: listener\nobservation of listener: three objects, red, blue and green\n"
         'message speaker -> listener: {"code": "zub"}']


class Offer(Message):
    """A message whose fields are declared out of alphabetical order."""

    zeta: int
    alpha: str


@pytest.fixture(scope="module")
def adapted(tiny_model_dir: Path) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """The tiny model with an adapter that visibly changes its outputs."""
    model, tokenizer = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    peft = attach_adapters(model, ["speaker", "listener"], rank=2)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    return peft, tokenizer


def test_features_come_from_the_base_model_without_gradient(
    adapted: tuple[PeftModel, PreTrainedTokenizerBase], tiny_model_dir: Path,
) -> None:
    peft, tokenizer = adapted
    flags = {name: p.requires_grad for name, p in peft.named_parameters()}
    active = peft.active_adapter
    features = text_features(peft, tokenizer, TEXTS)
    assert features.shape == (2, hidden_size(peft)) and not features.requires_grad
    plain, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    assert torch.allclose(features, text_features(plain, tokenizer, TEXTS), atol=1e-5)
    # The adapter on would have given other features: it really was off.
    ids = torch.tensor([tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad(), adapter_scope(peft, "speaker"):
        body = getattr(peft.get_base_model(), "model")  # noqa: B009 - typed as Module
        adapted_hidden = body(input_ids=ids).last_hidden_state
    assert not torch.allclose(adapted_hidden.mean(dim=1)[0], features[0], atol=1e-3)
    assert {name: p.requires_grad for name, p in peft.named_parameters()} == flags
    assert peft.active_adapter == active


def test_padding_does_not_change_a_text_features(
    adapted: tuple[PeftModel, PreTrainedTokenizerBase],
) -> None:
    peft, tokenizer = adapted
    for pooling in ("mean", "last"):
        alone = text_features(peft, tokenizer, TEXTS[:1], pooling)
        batched = text_features(peft, tokenizer, TEXTS, pooling)
        assert torch.allclose(alone[0], batched[0], atol=1e-5)
    mean = text_features(peft, tokenizer, TEXTS, "mean")
    assert not torch.allclose(mean, text_features(peft, tokenizer, TEXTS, "last"))


def _critic(width: int, agents: list[str], **config: Any) -> Critic:
    return Critic(width, PPOConfig(**config), agents)


def _trainable(model: PeftModel, critic: Critic) -> list[torch.nn.Parameter]:
    """What the trainer's critic optimiser holds: its heads and its own adapters."""
    own = tuple(f".{name}." for name in critic.adapters)
    adapters = [p for n, p in model.named_parameters()
                if p.requires_grad and any(o in n for o in own)]
    return [*critic.parameters(), *adapters]


@pytest.fixture
def with_critic(tiny_model_dir: Path) -> tuple[PeftModel, PreTrainedTokenizerBase, Critic]:
    """The tiny model with two actors' adapters and the (shared) LoRA critic's."""
    model, tokenizer = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    torch.manual_seed(0)
    critic = _critic(hidden_size(model), ["speaker", "listener"], critic_model="lora")
    peft = attach_adapters(model, ["speaker", "listener", *critic.adapters], rank=2)
    return peft, tokenizer, critic


def _rows(tokenizer: PreTrainedTokenizerBase, texts: list[str], agent: str = "listener"
          ) -> CriticRows:
    return CriticRows([agent] * len(texts), tokenise(tokenizer, texts), None)


def test_the_value_loss_reaches_only_the_critics_adapter_and_head(
    with_critic: tuple[PeftModel, PreTrainedTokenizerBase, Critic],
) -> None:
    model, tokenizer, critic = with_critic
    rows = _rows(tokenizer, TEXTS)
    critic(model, rows, torch.arange(2)).square().sum().backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    assert reached and all(".critic." in n for n in reached)
    assert all(p.grad is not None for p in critic.heads.parameters())


def test_a_value_only_step_leaves_the_actors_adapters_unchanged(
    with_critic: tuple[PeftModel, PreTrainedTokenizerBase, Critic],
) -> None:
    model, tokenizer, critic = with_critic
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.Adam(_trainable(model, critic), lr=1e-2)
    for _ in range(3):
        optimiser.zero_grad()
        (critic(model, _rows(tokenizer, TEXTS), torch.arange(2)) - 1.0).square().sum().backward()
        optimiser.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".critic." in n for n in changed)


def test_a_critic_that_sees_the_target_fits_returns_a_blind_one_cannot(
    with_critic: tuple[PeftModel, PreTrainedTokenizerBase, Critic],
) -> None:
    """Return 1 when the message names the target: only the target makes it predictable."""
    model, tokenizer, critic = with_critic
    colours = ["red", "blue", "green"]
    pairs = [(t, m) for t in colours for m in colours] * 2
    returns = torch.tensor([float(t == m) for t, m in pairs])
    seeing = _rows(tokenizer, [f"target: {t}\nmessage: {m}" for t, m in pairs])
    blind = _rows(tokenizer, [f"target: ?\nmessage: {m}" for _, m in pairs])
    fitted = {}
    for name, rows in (("seeing", seeing), ("blind", blind)):
        torch.manual_seed(0)
        for param in _trainable(model, critic):  # a fresh critic for each
            torch.nn.init.normal_(param, std=0.02) if param.dim() > 1 else param.data.zero_()
        optimiser = torch.optim.Adam(_trainable(model, critic), lr=1e-2)
        every = torch.arange(len(pairs))
        for _ in range(150):
            optimiser.zero_grad()
            (critic(model, rows, every) - returns).square().mean().backward()
            optimiser.step()
        with torch.no_grad():
            fitted[name] = explained_variance(returns, critic(model, rows, every))
    assert fitted["seeing"] > 0.9
    assert fitted["blind"] < 0.2


def test_per_agent_critics_each_have_an_adapter_and_a_head() -> None:
    critic = _critic(16, ["speaker", "listener"], critic_model="lora",
                     critic_sharing="per_agent")
    assert critic.names == {"listener": "critic_0", "speaker": "critic_1"}
    assert critic.adapters == ["critic_0", "critic_1"] == sorted(critic.heads)
    shared = _critic(16, ["speaker", "listener"], critic_model="lora")
    assert set(shared.names.values()) == {"critic"} and shared.adapters == ["critic"]
    assert _critic(16, ["speaker"]).adapters == []  # the frozen critic, the default


def test_frozen_values_are_denormalised() -> None:
    critic = _critic(4, ["a"], critic_model="frozen", critic_hidden=8)
    critic.normaliser.update(torch.tensor([10.0, 20.0, 30.0]))
    rows = CriticRows(["a"] * 3, [], torch.randn(3, 4))
    raw = critic(torch.nn.Linear(1, 1), rows, torch.arange(3)).detach()
    assert torch.allclose(critic.values(torch.nn.Linear(1, 1), rows),
                          raw * critic.normaliser.std + 20.0)


def test_no_critic_has_no_head() -> None:
    with pytest.raises(ValueError, match="no value head"):
        _critic(4, ["a"], critic="none")


def test_a_message_reads_as_json_with_sorted_keys_and_its_own_characters() -> None:
    envelopes = [seal(Observation(text=f"{agent} looks", action_names=["ok"]), run="r",
                      episode=0, step=0, sender="runner", recipient=agent)
                 for agent in ("alice", "bob")]
    envelopes.append(seal(Offer(zeta=2, alpha="café"), run="r", episode=0, step=0,
                          sender="alice", recipient="bob", schema_id="Offer@1"))
    trajectories = assemble(envelopes)
    bob = trajectories.steps[1]
    assert critic_text(trajectories, bob, "independent").splitlines()[-1] == (
        'message alice -> bob: {"alpha": "café", "zeta": 2}')
