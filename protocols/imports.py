"""Resolving `module:attr` import paths: the one place plug-ins are imported."""

from __future__ import annotations

import importlib
from typing import Any


class ImportPathError(ValueError):
    """An import path that is malformed or names nothing importable."""


def import_object(path: str) -> Any:
    """The object `module:attr` (attr may be dotted) names; ImportPathError if none."""
    module_name, sep, attr = path.partition(":")
    if not (module_name and sep and attr):
        raise ImportPathError(f"{path!r} is not of the form module:attribute")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ImportPathError(f"cannot import {path!r}: {error}") from None
    return target
