"""Schema registry: versioned message names (`Name@version`) to pydantic models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from protocols.declared import MessageSpec, resolve
from protocols.messages import BUILTIN_MESSAGES


class UnknownSchema(KeyError):
    """An envelope named a schema the registry does not hold."""


class UncheckedMessage(BaseModel):
    """A payload of a schema the reader does not know: any JSON object, kept as is."""

    model_config = ConfigDict(frozen=True, extra="allow")


class SchemaRegistry(Mapping[str, type[BaseModel]]):
    """Holds every message model of a run under its versioned name."""

    def __init__(self, models: Mapping[str, type[BaseModel]] | None = None,
                 fallback: type[BaseModel] | None = None) -> None:
        """`fallback`, if given, is the model of every schema not registered (see `lenient`)."""
        self._models: dict[str, type[BaseModel]] = dict(BUILTIN_MESSAGES)
        self._fallback = fallback
        for schema_id, model in (models or {}).items():
            self.register(schema_id, model)

    @classmethod
    def from_specs(cls, specs: Mapping[str, MessageSpec]) -> SchemaRegistry:
        """A registry of the built-ins plus the messages a scenario declares."""
        registry = cls()
        for name, spec in specs.items():
            registry.register(f"{name}@{spec.version}", resolve(name, spec))
        return registry

    @classmethod
    def lenient(cls) -> SchemaRegistry:
        """Built-ins typed, any other schema read as an `UncheckedMessage`.

        For reading a recording without its scenario: the run already validated
        every payload; here they are only shown.
        """
        return cls(fallback=UncheckedMessage)

    def register(self, schema_id: str, model: type[BaseModel]) -> None:
        name, sep, version = schema_id.partition("@")
        if not (name and sep and version.isdigit()):
            raise ValueError(f"schema id {schema_id!r} is not of the form Name@version")
        known = self._models.get(schema_id)
        if known is not None and known is not model:
            raise ValueError(f"schema {schema_id} is already registered to another model")
        self._models[schema_id] = model

    def __getitem__(self, schema_id: str) -> type[BaseModel]:
        model = self._models.get(schema_id, self._fallback)
        if model is None:
            raise UnknownSchema(schema_id)
        return model

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


BUILTIN_REGISTRY = SchemaRegistry()
"""The built-in messages only: what an envelope is read against when no registry is given."""
