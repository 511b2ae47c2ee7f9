"""Envelope wire form: `to_json` then `decode` gives back an equal envelope."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, JsonValue

from protocols import (
    Action,
    BuiltinMessage,
    Control,
    Envelope,
    EpisodeEnd,
    MalformedEnvelope,
    Observation,
    PolicyTrace,
    Reward,
    SchemaRegistry,
    check_schema,
    decode,
    seal,
)


class Note(BaseModel):
    """A say-kind message of a scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str


class Anything(BaseModel):
    """A payload model that accepts any JSON object, to round-trip arbitrary payloads."""

    model_config = ConfigDict(frozen=True, extra="allow")


REGISTRY = SchemaRegistry({"Anything@1": Anything})

names = st.text(min_size=1, max_size=12).filter(lambda s: not set(s) & set("/#+"))
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
traces = st.builds(
    PolicyTrace,
    prompt_ids=st.lists(st.integers(0, 50_000), max_size=6),
    token_ids=st.lists(st.integers(0, 50_000), max_size=6),
    logprobs=st.lists(st.floats(max_value=0, allow_nan=False, allow_infinity=False), max_size=6),
    constraint=st.none() | st.text(max_size=20),
    legal=st.none() | st.lists(st.integers(0, 9), max_size=4),
    options=st.none() | st.lists(st.lists(st.integers(0, 50_000), min_size=1, max_size=3),
                                 max_size=4),
    temperature=st.floats(0.01, 5),
    adapter=st.none() | names,
)
builtin_messages: st.SearchStrategy[tuple[str, BaseModel]] = st.one_of(
    st.tuples(st.just("Action@1"), st.builds(Action, action=st.integers(0, 99))),
    st.tuples(st.just("Reward@1"), st.builds(Reward, reward=finite)),
    st.tuples(st.just("Control@1"), st.builds(Control, detail=st.text(max_size=10))),
    st.tuples(
        st.just("EpisodeEnd@1"),
        st.builds(EpisodeEnd, returns=st.dictionaries(names, finite), steps=st.integers(0)),
    ),
    st.tuples(
        st.just("Observation@1"),
        st.builds(
            Observation,
            text=st.text(),
            data=json_values,
            action_names=st.lists(names, max_size=4),
            action_mask=st.none() | st.lists(st.booleans(), max_size=4),
        ),
    ),
)


def envelopes(schema: str, payloads: st.SearchStrategy[BaseModel]) -> st.SearchStrategy[Envelope]:
    return payloads.flatmap(lambda payload: _around(schema, payload))


def _around(schema: str, payload: BaseModel) -> st.SearchStrategy[Envelope]:
    """Any envelope of `payload`: its kind is the payload's own (`say` for a scenario's)."""
    kind = payload.kind if isinstance(payload, BuiltinMessage) else "say"
    return st.builds(
        Envelope,
        id=st.uuids().map(lambda u: u.hex),
        run=st.text(max_size=12),
        episode=st.integers(0, 10**6),
        step=st.integers(0, 10**6),
        sender=names,
        recipient=names,
        kind=st.just(kind),
        schema=st.just(schema),
        payload=st.just(payload),
        time=st.floats(0, 4e9),
        trace=st.none() | traces,
    )


@given(envelopes("Anything@1", st.dictionaries(st.text(max_size=6), json_values, max_size=5)
                 .map(Anything.model_validate)))
def test_any_json_payload_round_trips(envelope: Envelope) -> None:
    assert decode(envelope.to_json(), REGISTRY) == envelope


def _carrying(pair: tuple[str, BaseModel]) -> st.SearchStrategy[Envelope]:
    schema, message = pair
    return envelopes(schema, st.just(message))


@given(builtin_messages.flatmap(_carrying))
def test_builtin_messages_round_trip_typed(envelope: Envelope) -> None:
    decoded = decode(envelope.to_json(), REGISTRY)
    assert decoded == envelope
    assert type(decoded.payload) is REGISTRY[envelope.schema_id]


def test_decode_rejects_a_payload_its_schema_refuses() -> None:
    wire = seal(Action(action=1), run="r", episode=0, step=0, sender="a",
                recipient="runner").to_json().replace(b'"action":1', b'"action":-1')
    with pytest.raises(MalformedEnvelope, match="Action@1: action: Input should be greater"):
        decode(wire, REGISTRY)


def test_decode_rejects_an_unknown_schema() -> None:
    wire = seal(Anything(x=1), run="r", episode=0, step=0, sender="a", recipient="b",
                schema_id="Other@1").to_json()
    with pytest.raises(MalformedEnvelope, match="unknown schema 'Other@1'"):
        decode(wire, REGISTRY)


def test_seal_takes_kind_and_schema_from_a_builtin_message() -> None:
    envelope = seal(Reward(reward=1.0), run="r", episode=2, step=3, sender="runner",
                    recipient="a")
    assert (envelope.kind, envelope.schema_id) == ("reward", "Reward@1")
    assert isinstance(envelope.payload, Reward)


def test_an_envelope_whose_kind_does_not_fit_its_payload_is_refused() -> None:
    wire = seal(Control(command="stop"), run="r", episode=0, step=0, sender="runner",
                recipient="all").to_json().replace(b'"kind":"control","schema"',
                                                    b'"kind":"action","schema"')
    with pytest.raises(MalformedEnvelope, match="kind 'action' does not fit a Control@1"):
        decode(wire, REGISTRY)


def test_check_schema_refuses_a_message_of_another_model() -> None:
    envelope = seal(Anything(x=1), run="r", episode=0, step=0, sender="a", recipient="b",
                    schema_id="Note@1")
    with pytest.raises(MalformedEnvelope, match="not a Note"):
        check_schema(envelope, SchemaRegistry({"Note@1": Note}))
