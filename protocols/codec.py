"""Building envelopes from messages, and reading them off the wire: the one place for both."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from protocols.envelope import Envelope, PolicyTrace
from protocols.errors import describe
from protocols.messages import BUILTIN_MESSAGES, BuiltinMessage, Kind
from protocols.registry import SchemaRegistry, UnknownSchema

_SCHEMA_OF: dict[type[BaseModel], str] = {model: sid for sid, model in BUILTIN_MESSAGES.items()}


class MalformedEnvelope(ValueError):
    """Bytes on the bus that are not a valid envelope for this run's registry."""


def seal(
    message: BaseModel,
    *,
    run: str,
    episode: int,
    step: int,
    sender: str,
    recipient: str,
    schema_id: str | None = None,
    trace: PolicyTrace | None = None,
) -> Envelope:
    """Wrap a typed message in an envelope of this run.

    A built-in message (Observation, Action, ...) carries its own kind and schema;
    anything else is an agent's `say`, and `schema_id` names its model.
    """
    kind: Kind
    if isinstance(message, BuiltinMessage):
        kind, schema = message.kind, _SCHEMA_OF[type(message)]
    elif schema_id is None:
        raise ValueError(f"a {type(message).__name__} message needs its schema id")
    else:
        kind, schema = "say", schema_id
    return Envelope(run=run, episode=episode, step=step, sender=sender, recipient=recipient,
                    kind=kind, schema=schema, payload=message, trace=trace)


def check_schema(envelope: Envelope, registry: SchemaRegistry) -> None:
    """MalformedEnvelope unless the payload is an instance of the registry's model.

    A typed payload was validated when it was built; this only checks that it is
    the model this run's registry holds under its schema id (no re-validation).
    """
    try:
        model = registry[envelope.schema_id]
    except UnknownSchema:
        raise MalformedEnvelope(f"unknown schema {envelope.schema_id!r}") from None
    if not isinstance(envelope.payload, model):
        raise MalformedEnvelope(f"payload of {envelope.schema_id} is a "
                                f"{type(envelope.payload).__name__}, not a {model.__name__}")


def decode(raw: bytes | str, registry: SchemaRegistry) -> Envelope:
    """Parse untrusted bytes into an envelope whose payload is its schema's typed model.

    The `id` is required here although `Envelope` makes one up when built: receivers
    drop duplicates by it, and an envelope read without one would get a fresh id at
    every delivery, so each QoS 1 redelivery or replay would count as new.
    """
    try:
        envelope = Envelope.model_validate_json(raw, context={"registry": registry})
    except ValidationError as error:
        raise MalformedEnvelope(f"envelope: {describe(error, root='', limit=1)}") from None
    if "id" not in envelope.model_fields_set:
        raise MalformedEnvelope("envelope: id: Field required (receivers de-duplicate by it)")
    return envelope
