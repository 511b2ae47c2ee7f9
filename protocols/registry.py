"""Schema registry: versioned message names (`Name@version`) to pydantic models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, JsonValue, ValidationError

from protocols.declared import MessageSpec, resolve
from protocols.messages import BUILTIN_MESSAGES


class UnknownSchema(KeyError):
    """An envelope named a schema the registry does not hold."""


class SchemaRegistry(Mapping[str, type[BaseModel]]):
    """Holds every message model of a run under its versioned name."""

    def __init__(self, models: Mapping[str, type[BaseModel]] | None = None) -> None:
        self._models: dict[str, type[BaseModel]] = dict(BUILTIN_MESSAGES)
        for schema_id, model in (models or {}).items():
            self.register(schema_id, model)

    @classmethod
    def from_specs(cls, specs: Mapping[str, MessageSpec]) -> SchemaRegistry:
        """A registry of the built-ins plus the messages a scenario declares."""
        registry = cls()
        for name, spec in specs.items():
            registry.register(f"{name}@{spec.version}", resolve(name, spec))
        return registry

    def register(self, schema_id: str, model: type[BaseModel]) -> None:
        name, sep, version = schema_id.partition("@")
        if not (name and sep and version.isdigit()):
            raise ValueError(f"schema id {schema_id!r} is not of the form Name@version")
        known = self._models.get(schema_id)
        if known is not None and known is not model:
            raise ValueError(f"schema {schema_id} is already registered to another model")
        self._models[schema_id] = model

    def __getitem__(self, schema_id: str) -> type[BaseModel]:
        try:
            return self._models[schema_id]
        except KeyError:
            raise UnknownSchema(schema_id) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def latest(self, name: str) -> str:
        """The highest version registered under `name`."""
        versions = [int(s.split("@")[1]) for s in self._models if s.split("@")[0] == name]
        if not versions:
            raise UnknownSchema(name)
        return f"{name}@{max(versions)}"

    def validate(self, schema_id: str, payload: Mapping[str, Any]) -> BaseModel:
        """Validate a payload against its schema; raises UnknownSchema or ValidationError."""
        return self[schema_id].model_validate(payload)

    def json_schema(self, schema_id: str) -> dict[str, JsonValue]:
        """JSON Schema of one message model (what constrained decoding is given)."""
        schema: dict[str, JsonValue] = self[schema_id].model_json_schema()
        return schema

    def is_valid(self, schema_id: str, payload: Mapping[str, Any]) -> bool:
        try:
            self.validate(schema_id, payload)
        except (UnknownSchema, ValidationError):
            return False
        return True
