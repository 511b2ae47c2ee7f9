"""The critic: frozen base-model features (adapters off, no gradient) and a value head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from agents.llm.adapters import adapter_scope, attach_adapters
from agents.llm.loading import load_model
from agents.model import ModelConfig
from protocols import Message, Observation, seal
from training.critic import CentralCritic, critic_text, hidden_size, text_features
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


def test_value_head_learns_targets() -> None:
    torch.manual_seed(0)
    critic = CentralCritic(width=16, hidden=32)
    features = torch.randn(64, 16)
    targets = features[:, 0] * 2.0 - features[:, 1]
    optimiser = torch.optim.Adam(critic.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = (critic(features) - targets).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]


def test_values_are_denormalised() -> None:
    critic = CentralCritic(width=4, hidden=8)
    critic.normaliser.update(torch.tensor([10.0, 20.0, 30.0]))
    features = torch.randn(3, 4)
    raw = critic(features).detach()
    assert torch.allclose(critic.values(features), raw * critic.normaliser.std + 20.0)


def test_no_critic_has_no_head() -> None:
    with pytest.raises(ValueError, match="no value head"):
        CentralCritic(width=4, hidden=8, kind="none")


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
