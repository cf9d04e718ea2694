"""JSON Schema from Python types, and values checked against the same types: what the API
takes and gives is declared once, as TypedDicts and plain annotations, and both its OpenAPI
document and its input checks are made from those declarations (never written by hand).

Types understood: ``str``, ``int``, ``float``, ``bool``, ``None``, unions, ``Literal``,
``list[X]``, ``dict[str, X]``, TypedDicts (components of the document, by class name;
``NotRequired`` keys are optional) and ``Annotated[X, Meta(...)]`` for a description, a
format, bounds or a pattern."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, Union, get_args, get_origin, get_type_hints, is_typeddict

JSON = dict[str, Any]


@dataclass(frozen=True)
class Meta:
    """What an ``Annotated`` type adds to its schema (and its check)."""

    description: str | None = None
    format: str | None = None  # "date-time", "uri", "email"
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    example: Any = None


class Invalid(ValueError):
    """A value that does not fit its type: one line naming where (``body.url``)."""


def schema_of(kind: Any, components: dict[str, JSON]) -> JSON:
    """The JSON Schema (2020-12, as OpenAPI 3.1 takes it) of ``kind``; TypedDicts are added
    to ``components`` and referred to."""
    origin = get_origin(kind)
    if origin is typing.Annotated:
        inner, *extras = get_args(kind)
        found = dict(schema_of(inner, components))
        for meta in extras:
            if isinstance(meta, Meta):
                found.update(_meta_schema(meta))
        return found
    if kind is str:
        return {"type": "string"}
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if kind is type(None) or kind is None:
        return {"type": "null"}
    if kind is datetime:
        return {"type": "string", "format": "date-time"}
    if origin is Literal:
        values = list(get_args(kind))
        return {"enum": values}
    if origin in (Union, types.UnionType):
        options = [schema_of(arg, components) for arg in get_args(kind)]
        simple = [o.get("type") for o in options]
        if all(isinstance(t, str) and len(o) == 1 for t, o in zip(simple, options, strict=True)):
            return {"type": simple}
        return {"anyOf": options}
    if origin in (list, tuple):
        args = [a for a in get_args(kind) if a is not Ellipsis]
        return {"type": "array", "items": schema_of(args[0], components)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(get_args(kind)[1], components)}
    if is_typeddict(kind):
        name = kind.__name__
        if name not in components:
            components[name] = {}  # (a self-reference stops here)
            hints = get_type_hints(kind, include_extras=True)
            properties = {key: schema_of(_required(hint), components) for key, hint in hints.items()}
            shape: JSON = {"type": "object", "properties": properties, "additionalProperties": False}
            required = required_keys(kind)
            if required:
                shape["required"] = required
            if kind.__doc__:
                shape["description"] = " ".join(kind.__doc__.split())
            components[name] = shape
        return {"$ref": f"#/components/schemas/{name}"}
    if kind is Any or kind is object:
        return {}
    raise TypeError(f"no JSON Schema for {kind!r}")


def required_keys(kind: Any) -> list[str]:
    """A TypedDict's required keys, read from its hints: under ``from __future__ import
    annotations`` Python 3.11 cannot see NotRequired when the class is made."""
    hints = get_type_hints(kind, include_extras=True)
    total = getattr(kind, "__total__", True)
    required = []
    for key, hint in hints.items():
        origin = get_origin(hint)
        if origin is NotRequired:
            continue
        if origin is typing.Required or total:
            required.append(key)
    return sorted(required)


def _required(hint: Any) -> Any:
    """A TypedDict key's type without its NotRequired or Required."""
    return get_args(hint)[0] if get_origin(hint) in (NotRequired, typing.Required) else hint


def _meta_schema(meta: Meta) -> JSON:
    found: JSON = {}
    if meta.description:
        found["description"] = meta.description
    if meta.format:
        found["format"] = meta.format
    if meta.minimum is not None:
        found["minimum"] = meta.minimum
    if meta.maximum is not None:
        found["maximum"] = meta.maximum
    if meta.max_length is not None:
        found["maxLength"] = meta.max_length
    if meta.pattern is not None:
        found["pattern"] = meta.pattern
    if meta.example is not None:
        found["examples"] = [meta.example]
    return found


def check(value: Any, kind: Any, where: str) -> Any:
    """``value`` (decoded JSON) if it fits ``kind``, else Invalid naming ``where``."""
    origin = get_origin(kind)
    if origin is typing.Annotated:
        inner, *extras = get_args(kind)
        checked = check(value, inner, where)
        for meta in extras:
            if isinstance(meta, Meta):
                _check_meta(checked, meta, where)
        return checked
    if kind is Any or kind is object:
        return value
    if kind is type(None) or kind is None:
        if value is not None:
            raise Invalid(f"{where}: expected null")
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(kind):
            try:
                return check(value, arg, where)
            except Invalid:
                continue
        raise Invalid(f"{where}: expected {_shown(kind)}")
    if origin is Literal:
        if value not in get_args(kind) or isinstance(value, bool) != any(
            isinstance(a, bool) for a in get_args(kind)
        ):
            raise Invalid(f"{where}: expected one of {', '.join(map(str, get_args(kind)))}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise Invalid(f"{where}: expected true or false")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{where}: expected an integer")
        return value
    if kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise Invalid(f"{where}: expected a number")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise Invalid(f"{where}: expected a string")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise Invalid(f"{where}: expected an array")
        item = next(a for a in get_args(kind) if a is not Ellipsis)
        return [check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if is_typeddict(kind):
        if not isinstance(value, dict):
            raise Invalid(f"{where}: expected an object")
        hints = get_type_hints(kind, include_extras=True)
        unknown = sorted(set(value) - set(hints))
        if unknown:
            raise Invalid(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(hints)})")
        for key in required_keys(kind):
            if key not in value:
                raise Invalid(f"{where}.{key}: missing")
        return {key: check(v, _required(hints[key]), f"{where}.{key}") for key, v in value.items()}
    raise TypeError(f"cannot check {kind!r}")


def _check_meta(value: Any, meta: Meta, where: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if meta.minimum is not None and value < meta.minimum:
            raise Invalid(f"{where}: at least {meta.minimum}")
        if meta.maximum is not None and value > meta.maximum:
            raise Invalid(f"{where}: at most {meta.maximum}")
    if isinstance(value, str):
        if meta.max_length is not None and len(value) > meta.max_length:
            raise Invalid(f"{where}: at most {meta.max_length} characters")
        if meta.pattern is not None and not re.search(meta.pattern, value):
            raise Invalid(f"{where}: not of the expected form")


def _shown(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}
    args = get_args(kind)
    return " or ".join(names.get(a, "an object" if is_typeddict(a) else "an array") for a in args)
