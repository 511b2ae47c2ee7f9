"""Message models declared in YAML and by import path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from protocols import (
    ImportPathError,
    MessageSpec,
    SchemaRegistry,
    UnknownSchema,
    describe,
    import_model,
)

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
    schema: dict[str, Any] = registry.json_schema("Hint@2")
    properties = schema["properties"]
    assert properties["word"]["enum"] == ["alpha", "beta", "gamma"]
    assert properties["count"]["maximum"] == 5
    assert properties["note"]["maxLength"] == 12
    assert set(schema["required"]) == {"word", "count", "note", "tags", "detail"}


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


def _refusal(spec: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        MessageSpec.model_validate(spec)
    return describe(caught.value)


@pytest.mark.parametrize(("field", "expected"), [
    ({"type": "str", "pattern": "["}, "pattern: not a usable regex: unclosed character class"),
    ({"type": "str", "pattern": "(?=a)a"}, "pattern: not a usable regex: look-around"),
    ({"type": "enum"}, "a field of type enum needs 'values'"),
    ({"type": "enum", "values": []}, "a field of type enum needs 'values'"),
    ({"type": "list"}, "a field of type list needs 'items'"),
    ({"type": "object", "fields": {}}, "a field of type object needs 'fields'"),
    ({"type": "str", "min_length": 5, "max_length": 2}, "min_length is greater than max_length"),
    ({"type": "int", "ge": 0.5}, "the bounds of an int field must be whole numbers"),
    ({"type": "int", "le": 1e300}, "the bounds of an int field must be whole numbers"),
    ({"type": "float", "ge": float("inf")}, "ge: Input should be a finite number"),
    ({"type": "str", "max_length": 10**30}, "max_length: Input should be less than or equal"),
])
def test_field_spec_that_cannot_build_a_model_is_refused(field: dict[str, object],
                                                         expected: str) -> None:
    assert expected in _refusal({"fields": {"x": field}})


@pytest.mark.parametrize("name", ["_x", "__x", "model_config", "model_dump", "json"])
def test_field_names_a_pydantic_model_cannot_keep_are_refused(name: str) -> None:
    problem = _refusal({"fields": {"ok": {"type": "object", "fields": {name: {"type": "int"}}}}})
    assert f"field name {name!r}" in problem


def test_import_of_something_that_is_not_a_model_is_refused() -> None:
    assert "'os:path' is a module, not a pydantic model" in _refusal({"import": "os:path"})
    assert "cannot import 'os:nope'" in _refusal({"import": "os:nope"})
    with pytest.raises(ImportPathError):
        import_model("os:path")


def test_int_field_with_whole_float_bounds_builds() -> None:
    registry = SchemaRegistry.from_specs({"N": MessageSpec.model_validate(
        {"fields": {"n": {"type": "int", "ge": 0.0, "le": 3.0}}})})
    assert registry.validate("N@1", {"n": 3}).model_dump() == {"n": 3}
    with pytest.raises(ValidationError):
        registry.validate("N@1", {"n": 4})


def test_import_of_a_module_that_fails_as_it_loads_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "half_written_messages.py").write_text("raise RuntimeError('not yet')\n")
    assert "cannot import 'half_written_messages:Hint': RuntimeError: not yet" in _refusal(
        {"import": "half_written_messages:Hint"})
