"""Message models declared as data (YAML) or named by import path.

A declared field is a small typed spec; `build_model` turns a set of them into a
frozen pydantic model, so YAML-declared and hand-written messages behave alike.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from protocols.imports import import_object
from protocols.messages import Message

FieldType = Literal["str", "int", "float", "bool", "enum", "list", "object"]


class FieldSpec(BaseModel):
    """One field of a declared message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: FieldType
    description: str = ""
    required: bool = True
    default: Any = None
    values: list[str] | None = Field(default=None, description="Allowed values of an enum.")
    min_length: int | None = Field(default=None, ge=0, description="Shortest string.")
    max_length: int | None = Field(default=None, ge=0, description="Longest string.")
    pattern: str | None = Field(default=None, description="Regex a string must match.")
    ge: float | None = Field(default=None, description="Inclusive lower bound of a number.")
    le: float | None = Field(default=None, description="Inclusive upper bound of a number.")
    items: FieldSpec | None = Field(default=None, description="Element type of a list.")
    min_items: int | None = Field(default=None, ge=0)
    max_items: int | None = Field(default=None, ge=0)
    fields: dict[str, FieldSpec] | None = Field(default=None, description="Fields of an object.")


class MessageSpec(BaseModel):
    """A message model: declared `fields`, or `import: module:Class` of a pydantic model."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    version: int = Field(default=1, ge=1)
    description: str = ""
    fields: dict[str, FieldSpec] | None = None
    import_path: str | None = Field(default=None, alias="import", pattern=r"^[\w.]+:[\w.]+$")

    def model_post_init(self, _context: Any) -> None:
        if (self.fields is None) == (self.import_path is None):
            raise ValueError("give exactly one of 'fields' or 'import'")


def _annotation(name: str, spec: FieldSpec) -> Any:
    """The Python type of one declared field, constraints attached."""
    match spec.type:
        case "str":
            return Annotated[
                str, Field(min_length=spec.min_length, max_length=spec.max_length,
                           pattern=spec.pattern)
            ]
        case "int":
            return Annotated[int, Field(ge=spec.ge, le=spec.le)]
        case "float":
            return Annotated[float, Field(ge=spec.ge, le=spec.le)]
        case "bool":
            return bool
        case "enum":
            if not spec.values:
                raise ValueError(f"field '{name}': an enum needs 'values'")
            return Literal[tuple(spec.values)]
        case "list":
            if spec.items is None:
                raise ValueError(f"field '{name}': a list needs 'items'")
            inner = _annotation(f"{name}[]", spec.items)
            return Annotated[list[inner], Field(min_length=spec.min_items,  # type: ignore[valid-type]
                                                max_length=spec.max_items)]
        case "object":
            if not spec.fields:
                raise ValueError(f"field '{name}': an object needs 'fields'")
            return build_model(name.title().replace("_", ""), spec.fields, base=BaseModel)
    raise ValueError(f"field '{name}': unknown type {spec.type!r}")  # pragma: no cover


def build_model(
    name: str, fields: dict[str, FieldSpec], base: type[BaseModel] = Message
) -> type[BaseModel]:
    """Build a frozen pydantic model named `name` from declared fields."""
    definitions: dict[str, Any] = {}
    for field_name, spec in fields.items():
        annotation = _annotation(field_name, spec)
        default = ... if spec.required else spec.default
        definitions[field_name] = (annotation, Field(default, description=spec.description))
    config = ConfigDict(frozen=True, extra="forbid")
    if base is Message:
        return create_model(name, __base__=Message, **definitions)
    return create_model(name, __config__=config, **definitions)


def import_model(path: str) -> type[BaseModel]:
    """Import `module:Class` and check that it is a pydantic model."""
    target = import_object(path)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise TypeError(f"{path} is not a pydantic model")
    return target


def resolve(name: str, spec: MessageSpec) -> type[BaseModel]:
    """The model a MessageSpec describes."""
    if spec.import_path is not None:
        return import_model(spec.import_path)
    assert spec.fields is not None
    return build_model(name, spec.fields)
