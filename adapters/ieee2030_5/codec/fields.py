"""Introspection of wire models: what each field is on the wire (attribute or element,
namespace, simple type, repetition). Shared by the serialiser, the parser and the schema
generator so that the three never disagree."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.ieee2030_5.codec.models import SEP_NS
from adapters.ieee2030_5.codec.simple import Xsd


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    ns: str
    is_attr: bool
    xsi_typed: bool  # the element carries xsi:type naming its concrete model
    required: bool
    repeated: bool
    model: type | None  # a nested wire model, or None for a simple value
    python: type  # int, str or bool for simple values
    xsd: Xsd | None
    tag: str = ""  # the element's name in Clark notation, {ns}name (elements only)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """Strip `X | None`; report whether None was allowed."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _spec(f: dataclasses.Field[Any], hint: Any, owner_ns: str) -> FieldSpec:
    hint, optional = _unwrap(hint)
    repeated = typing.get_origin(hint) is list
    if repeated:
        hint = typing.get_args(hint)[0]
    xsd: Xsd | None = None
    python: type = str
    model: type | None = None
    if typing.get_origin(hint) is typing.Annotated:
        python, xsd = typing.get_args(hint)[0], typing.get_args(hint)[1]
    elif dataclasses.is_dataclass(hint):
        model = hint  # type: ignore[assignment]
    elif hint in (int, str, bool):
        python = hint
    return FieldSpec(
        name=f.name,
        ns=f.metadata.get("ns", owner_ns),
        is_attr=bool(f.metadata.get("attr")),
        xsi_typed=bool(f.metadata.get("xsi_type")),
        required=not (optional or repeated),
        repeated=repeated,
        model=model,
        python=python,
        xsd=xsd,
        tag=f"{{{f.metadata.get('ns', owner_ns)}}}{f.name}",
    )


@cache
def specs(cls: Any) -> tuple[FieldSpec, ...]:
    """The wire fields of a model, in element order."""
    assert isinstance(cls, type) and dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    owner_ns = getattr(cls, "ns", SEP_NS)
    return tuple(_spec(f, hints[f.name], owner_ns) for f in dataclasses.fields(cls))
