"""Envelopes, message kinds and the schema registry. Pure: no I/O, no torch."""

from protocols.codec import MalformedEnvelope, check_schema, decode, seal
from protocols.declared import FieldSpec, MessageSpec, build_model, import_model
from protocols.envelope import BROADCAST, RUNNER, Envelope, PolicyTrace
from protocols.errors import describe, validation_issues
from protocols.imports import ImportPathError, import_object
from protocols.messages import (
    KINDS,
    Action,
    BuiltinMessage,
    Control,
    EpisodeEnd,
    Kind,
    Message,
    Observation,
    Reward,
)
from protocols.registry import SchemaRegistry, UncheckedMessage, UnknownSchema

__all__ = [
    "BROADCAST",
    "KINDS",
    "RUNNER",
    "Action",
    "BuiltinMessage",
    "Control",
    "Envelope",
    "EpisodeEnd",
    "FieldSpec",
    "ImportPathError",
    "Kind",
    "MalformedEnvelope",
    "Message",
    "MessageSpec",
    "Observation",
    "PolicyTrace",
    "Reward",
    "SchemaRegistry",
    "UncheckedMessage",
    "UnknownSchema",
    "build_model",
    "check_schema",
    "decode",
    "describe",
    "import_model",
    "import_object",
    "seal",
    "validation_issues",
]
