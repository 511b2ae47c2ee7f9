"""Reading envelopes off the wire: every check at the edge, one error type out."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from protocols.envelope import Envelope
from protocols.messages import Message
from protocols.registry import SchemaRegistry, UnknownSchema


class MalformedEnvelope(ValueError):
    """Bytes on the bus that are not a valid envelope for this run's registry."""


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<root>"
    return f"{where}: {first['msg']}"


def check_payload(envelope: Envelope, registry: SchemaRegistry) -> BaseModel:
    """Validate an envelope's payload against its schema; MalformedEnvelope if not."""
    try:
        return registry.validate(envelope.schema_id, envelope.payload)
    except UnknownSchema:
        raise MalformedEnvelope(f"unknown schema {envelope.schema_id!r}") from None
    except ValidationError as error:
        raise MalformedEnvelope(f"payload of {envelope.schema_id}: {_first_error(error)}") from None


def decode(raw: bytes | str, registry: SchemaRegistry) -> Envelope:
    """Parse and fully validate one envelope (structure, then payload against its schema)."""
    try:
        envelope = Envelope.model_validate_json(raw)
    except ValidationError as error:
        raise MalformedEnvelope(f"envelope: {_first_error(error)}") from None
    check_payload(envelope, registry)
    return envelope


def open_payload(envelope: Envelope, registry: SchemaRegistry) -> Message | BaseModel:
    """The typed message inside an envelope that has already been validated."""
    return registry[envelope.schema_id].model_validate(envelope.payload)
