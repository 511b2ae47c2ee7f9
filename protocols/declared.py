"""Message models declared as data (YAML) or named by import path.

A declared field is a small typed spec; `build_model` turns a set of them into a
frozen pydantic model, so YAML-declared and hand-written messages behave alike.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.errors import PydanticUserError
from pydantic_core import SchemaError, SchemaValidator, core_schema

from protocols.imports import ImportPathError, import_object
from protocols.messages import Message

FieldType = Literal["str", "int", "float", "bool", "enum", "list", "object"]
MAX_SIZE = 2**32
"""Largest length or item count a field may set: pydantic-core keeps them as machine words."""
MAX_INT_BOUND = 2**53
"""Largest `ge`/`le` of an int field: bounds are read as floats, exact up to 2**53."""


def _field_name(name: str) -> str:
    """A declared field's name must be one a pydantic model can have and keep."""
    if name.startswith("_"):
        raise ValueError(f"field name {name!r} may not start with '_'")
    if hasattr(BaseModel, name):  # model_config, model_dump, json, copy, ...
        raise ValueError(f"field name {name!r} is taken by pydantic models")
    return name


def _regex(pattern: str | None) -> str | None:
    """A pattern must compile under pydantic's regex engine (Rust: no look-around)."""
    if pattern is not None:
        try:
            SchemaValidator(core_schema.str_schema(pattern=pattern))
        except SchemaError as error:
            problem = str(error).splitlines()[-1].strip().removeprefix("error: ")
            raise ValueError(f"not a usable regex: {problem}") from None
    return pattern


FieldName = Annotated[str, AfterValidator(_field_name)]


class FieldSpec(BaseModel):
    """One field of a declared message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: FieldType = Field(description="The field's type; `enum` takes `values`, `list` "
                            "takes `items`, `object` takes `fields`.")
    description: str = Field(default="", description="Shown to the model in the JSON Schema.")
    required: bool = Field(default=True, description="False: the field may be left out.")
    default: Any = Field(default=None, description="The value of a field left out.")
    values: list[str] | None = Field(default=None, description="Allowed values of an enum.")
    min_length: int | None = Field(default=None, ge=0, le=MAX_SIZE, description="Shortest string.")
    max_length: int | None = Field(default=None, ge=0, le=MAX_SIZE, description="Longest string.")
    pattern: Annotated[str | None, AfterValidator(_regex)] = Field(
        default=None, description="Regex a string must match (no look-around).")
    ge: float | None = Field(default=None, allow_inf_nan=False,
                             description="Inclusive lower bound of a number.")
    le: float | None = Field(default=None, allow_inf_nan=False,
                             description="Inclusive upper bound of a number.")
    items: FieldSpec | None = Field(default=None, description="Element type of a list.")
    min_items: int | None = Field(default=None, ge=0, le=MAX_SIZE, description="Shortest list.")
    max_items: int | None = Field(default=None, ge=0, le=MAX_SIZE, description="Longest list.")
    fields: dict[FieldName, FieldSpec] | None = Field(
        default=None, description="Fields of an object.")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        """What `build_model` needs of each type, and bounds that some value can meet."""
        needs = {"enum": ("values", self.values), "list": ("items", self.items),
                 "object": ("fields", self.fields)}
        if self.type in needs and not needs[self.type][1]:
            raise ValueError(f"a field of type {self.type} needs '{needs[self.type][0]}'")
        for low, high in (("min_length", "max_length"), ("min_items", "max_items"), ("ge", "le")):
            if None not in (getattr(self, low), getattr(self, high)) and \
                    getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} is greater than {high}")
        if self.type == "int":
            for bound in (self.ge, self.le):
                if bound is not None and not (bound.is_integer() and abs(bound) <= MAX_INT_BOUND):
                    raise ValueError(f"the bounds of an int field must be whole numbers "
                                     f"within ±2**53, got {bound}")
        return self


class MessageSpec(BaseModel):
    """A message model: declared `fields`, or `import: module:Class` of a pydantic model."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    version: int = Field(default=1, ge=1, description="Part of the schema id, `Name@version`.")
    description: str = Field(default="", description="What the message is for; shown to "
                             "the model in the JSON Schema.")
    fields: dict[FieldName, FieldSpec] | None = Field(
        default=None, description="The message's fields (or give `import`).")
    import_path: str | None = Field(default=None, alias="import", pattern=r"^[\w.]+:[\w.]+$",
                                    description="module:Class of a pydantic model to use as is.")

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        """One source, and a model that builds: a bad spec fails here, where its line is known."""
        if (self.fields is None) == (self.import_path is None):
            raise ValueError("give exactly one of 'fields' or 'import'")
        try:
            resolve("Message", self)
        except ImportPathError as error:
            raise ValueError(str(error)) from None
        except (PydanticUserError, SchemaError, TypeError, ValueError) as error:
            # Pydantic refuses some definitions the spec checks above do not foresee.
            raise ValueError(f"cannot build the message: {' '.join(str(error).split())}") from None
        except Exception as error:
            if self.import_path is None:
                raise
            # The imported module's own failure as it loads (import_object passes it on).
            raise ValueError(f"cannot import {self.import_path!r}: {type(error).__name__}: "
                             f"{' '.join(str(error).split())}") from None
        return self


def _whole(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _annotation(name: str, spec: FieldSpec) -> Any:
    """The Python type of one declared field, constraints attached."""
    match spec.type:
        case "str":
            return Annotated[
                str, Field(min_length=spec.min_length, max_length=spec.max_length,
                           pattern=spec.pattern)
            ]
        case "int":  # whole-number bounds (checked by FieldSpec), as pydantic wants for ints
            return Annotated[int, Field(ge=_whole(spec.ge), le=_whole(spec.le))]
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
    """Import `module:Class`; ImportPathError unless it is a pydantic model."""
    target = import_object(path)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise ImportPathError(f"{path!r} is a {type(target).__name__}, not a pydantic model")
    return target


def resolve(name: str, spec: MessageSpec) -> type[BaseModel]:
    """The model a MessageSpec describes."""
    if spec.import_path is not None:
        return import_model(spec.import_path)
    assert spec.fields is not None
    return build_model(name, spec.fields)
