"""Message models declared in YAML and by import path."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from protocols import MessageSpec, SchemaRegistry, UnknownSchema

NESTED = {
    "version": 2,
    "fields": {
        "word": {"type": "enum", "values": ["alpha", "beta", "gamma"]},
        "count": {"type": "int", "ge": 0, "le": 5},
        "note": {"type": "str", "min_length": 1, "max_length": 12},
        "tags": {"type": "list", "items": {"type": "str", "max_length": 4}, "max_items": 3},
        "detail": {"type": "object", "fields": {"sure": {"type": "bool"},
                                                  "p": {"type": "float", "ge": 0, "le": 1}}},
        "extra": {"type": "str", "required": False, "default": "none"},
    },
}
GOOD = {"word": "beta", "count": 3, "note": "red one", "tags": ["a", "bb"],
        "detail": {"sure": True, "p": 0.5}}


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_specs({"Hint": MessageSpec.model_validate(NESTED)})


def test_declared_model_accepts_valid_payload(registry: SchemaRegistry) -> None:
    message = registry.validate("Hint@2", GOOD)
    assert message.model_dump()["extra"] == "none"


@pytest.mark.parametrize("change", [
    {"word": "delta"}, {"count": 6}, {"note": ""}, {"note": "x" * 13},
    {"tags": ["a", "b", "c", "d"]}, {"tags": ["toolong"]}, {"detail": {"sure": True, "p": 2}},
    {"surprise": 1},
])
def test_declared_model_rejects_each_constraint(registry: SchemaRegistry,
                                                change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        registry.validate("Hint@2", {**GOOD, **change})


def test_declared_model_is_frozen(registry: SchemaRegistry) -> None:
    message = registry.validate("Hint@2", GOOD)
    with pytest.raises(ValidationError):
        message.word = "alpha"  # type: ignore[attr-defined]


def test_json_schema_export_carries_constraints(registry: SchemaRegistry) -> None:
    schema = registry.json_schema("Hint@2")
    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert properties["word"]["enum"] == ["alpha", "beta", "gamma"]  # type: ignore[index]
    assert properties["count"]["maximum"] == 5  # type: ignore[index]
    assert properties["note"]["maxLength"] == 12  # type: ignore[index]
    assert set(schema["required"]) == {"word", "count", "note", "tags", "detail"}  # type: ignore[arg-type]


class Offer(BaseModel):
    books: int


def test_import_path_model_is_registered() -> None:
    spec = MessageSpec.model_validate({"import": f"{__name__}:Offer", "version": 3})
    registry = SchemaRegistry.from_specs({"Offer": spec})
    assert registry["Offer@3"] is Offer
    assert registry.latest("Offer") == "Offer@3"


def test_spec_needs_fields_or_import() -> None:
    with pytest.raises(ValidationError):
        MessageSpec.model_validate({"version": 1})


def test_unknown_schema_is_named() -> None:
    with pytest.raises(UnknownSchema, match="Nope@1"):
        SchemaRegistry()["Nope@1"]


def test_versions_are_distinct(registry: SchemaRegistry) -> None:
    registry.register("Hint@1", Offer)
    assert registry.latest("Hint") == "Hint@2"
    assert registry["Hint@1"] is Offer
