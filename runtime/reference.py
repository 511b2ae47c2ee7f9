"""The scenario reference, written from the pydantic models themselves (docs/reference.md).

Every field of a model becomes a row (its YAML path, type, default and description);
a field whose type holds another model is followed into it, so the reference covers
the whole file and cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def reference(model: type[BaseModel], prefix: str = "") -> str:
    """A Markdown table of `model`'s fields and of every model they hold, depth first."""
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    rows += _rows(model, prefix, set())
    return "\n".join(rows) + "\n"


def _rows(model: type[BaseModel], prefix: str, seen: set[type[BaseModel]]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        rows.append(f"| `{path}` | {_cell(_type_name(info.annotation))} | "
                    f"{_cell(_default(info))} | {_cell(info.description or '')} |")
        for inner in _models_in(info.annotation):
            if inner not in seen:  # a model that holds itself is described once
                rows += _rows(inner, f"{path}{_step_into(info.annotation)}.", seen | {inner})
    return rows


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (itself, or in its Optional, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _step_into(annotation: Any) -> str:
    """How the YAML path goes into a container's items: `.<name>` for a mapping, `[]` for
    a list; nothing for a plain (or optional) model."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return ".<name>"
    if origin is list:
        return "[]"
    for arg in typing.get_args(annotation):
        if _models_in(arg):
            return _step_into(arg)
    return ""


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "null"
    if hasattr(annotation, "__value__"):  # a named type alias, e.g. pydantic's JsonValue
        return str(annotation.__name__)
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[{', '.join(_type_name(a) for a in args)}]"


def _default(info: FieldInfo) -> str:
    if info.default is not PydanticUndefined:
        value = info.default
        return f"`{value!r}`" if not isinstance(value, BaseModel) else "(see below)"
    if info.default_factory is not None:
        return "(see below)" if _models_in(info.annotation) else "empty"
    return "required"


def _cell(text: str) -> str:
    """Text fit for one table cell: one line, no bare `|`."""
    return " ".join(text.split()).replace("|", "\\|").replace("\\\\|", "\\|")
