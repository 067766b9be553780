"""The base of every scenario model: immutable, unknown keys rejected, numbers that are numbers.

``frozen=True`` lets the layers below share spec objects without copying (nothing can change a scenario once it
is validated); ``extra="forbid"`` turns a misspelt key into an error naming it rather than a silently ignored
setting. Two type-level rules hold for every numeric field of every model, so no field needs its own check:

* **finite**: ``allow_inf_nan=False`` refuses ``.inf`` and ``.nan`` (an infinite horizon or rate never ends, a
  NaN compares false with every bound);
* **a boolean is not a number**: YAML reads ``true`` as a boolean and pydantic would take it as 1; a field whose
  type is numeric (``int``, ``float``, or lists of them) refuses it instead.

:func:`known_fields` tells which fields a model at a path accepts, so an error about an unknown key can say
what was probably meant (:func:`agentsim.errors.did_you_mean`). Every model of :mod:`agentsim.spec` (and of
the catalog) derives from :class:`Strict`.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

MAX_COUNT = 2**53
"""The largest count (tokens, calls) agentsim takes in: exact in float64, and far enough below int64's limit
that sums over many calls cannot overflow. Real context windows are below 2**24."""


@functools.cache
def _numeric(annotation: Any) -> bool:
    """A numeric type (``int``, ``float``, constrained or optional, or a list of them) that does not also
    accept a boolean."""
    leaves = list(_leaves(annotation))
    return bool not in leaves and any(t in (int, float) for t in leaves)


def _leaves(annotation: Any) -> typing.Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _leaves(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            yield from _leaves(a)
    elif origin in (list, tuple, Sequence):
        for a in typing.get_args(annotation):
            if a is not Ellipsis:
                yield from _leaves(a)
    else:
        yield annotation


def _has_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value))


def _describe_kind(schema: dict[str, Any], cls: type[Any]) -> None:
    """The tag of a tagged union's variant describes itself: ``kind: "gamma"`` selects that variant."""
    kind = (schema.get("properties") or {}).get("kind")
    if isinstance(kind, dict) and "description" not in kind:
        tag = kind.get("const", kind.get("default"))
        kind["description"] = f"the variant: {tag!r}" if tag is not None else "the variant"


class Strict(BaseModel):
    """Base of every spec model: immutable, unknown keys rejected, numbers finite and not booleans."""

    # use_attribute_docstrings: a field's docstring (the string under it) is its description in the JSON
    # Schema, so editors show what a field means, not only its type.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        json_schema_extra=_describe_kind,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        # A model-level check (a field-level "*" validator would also wrap the union tags, which pydantic
        # forbids); the error carries the field's name, which error_loc() appends to the model's path.
        if isinstance(data, Mapping):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None and _has_bool(value) and _numeric(field.annotation):  # type: ignore[arg-type]
                    shown = str(value).replace("True", "true").replace("False", "false")
                    raise PydanticCustomError(
                        BOOL_NUMBER, "expected a number, got the boolean {value}", {"field": name, "value": shown}
                    )
        return data


BOOL_NUMBER = "boolean_number"
"""The pydantic error type of a boolean given for a number; its ``ctx["field"]`` names the field."""


def error_loc(err: Mapping[str, Any]) -> tuple[str | int, ...]:
    """The location of one pydantic error (``ValidationError.errors()``), down to the field for the errors
    that :class:`Strict` raises at the model level."""
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    if err.get("type") == BOOL_NUMBER and "field" in ctx:
        loc = (*loc, ctx["field"])
    return loc


def _step(annotation: Any, part: str | int) -> list[Any]:
    """The types found at ``part`` inside a value of type ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _step(a, part)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return [field.annotation] if field is not None else []
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        return [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (dict, Mapping) and isinstance(part, str):
        return list(typing.get_args(annotation)[1:2])
    return []


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [t for t in _leaves(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]


def known_fields(model: type[BaseModel], loc: Sequence[str | int], data: Any = None) -> list[str]:
    """The field names accepted by the model found at ``loc`` (a path of field names and list indices) inside
    ``model``: what a key unknown there could have meant. ``data``, the raw input, picks the variant of a
    union by its ``kind``. Empty when ``loc`` leads to no model."""
    types_: list[Any] = [model]
    node = data
    for part in loc:
        types_ = [t for a in types_ for t in _step(a, part)]
        if isinstance(node, Mapping) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        else:
            node = None
    models = [m for a in types_ for m in _models(a)]
    if isinstance(node, Mapping) and "kind" in node:
        chosen = [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == node["kind"]]
        models = chosen or models
    names: list[str] = []
    for m in models:
        names += [n for n in m.model_fields if n not in names]
    return names
