"""Envelopes, message kinds and the schema registry. Pure: no I/O, no torch."""

from protocols.codec import MalformedEnvelope, check_payload, decode, open_payload
from protocols.declared import FieldSpec, MessageSpec, build_model, import_model
from protocols.envelope import BROADCAST, RUNNER, Envelope, PolicyTrace
from protocols.messages import (
    KINDS,
    Action,
    Control,
    EpisodeEnd,
    Kind,
    Message,
    Observation,
    Reward,
)
from protocols.registry import SchemaRegistry, UnknownSchema

__all__ = [
    "BROADCAST",
    "KINDS",
    "RUNNER",
    "Action",
    "Control",
    "Envelope",
    "EpisodeEnd",
    "FieldSpec",
    "Kind",
    "MalformedEnvelope",
    "Message",
    "MessageSpec",
    "Observation",
    "PolicyTrace",
    "Reward",
    "SchemaRegistry",
    "UnknownSchema",
    "build_model",
    "check_payload",
    "decode",
    "import_model",
    "open_payload",
]
